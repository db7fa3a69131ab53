"""`charjax export`: onnxruntime on the exported file reproduces charjax's predictions."""

import json
import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import render_char, run_cli

from charjax.export import ExportConfig, export_onnx, onnx_model
from charjax.labels import CLASSES
from charjax.models import get_model, model_names
from charjax.predict import Predictor, default_checkpoint

ort = pytest.importorskip("onnxruntime", reason="charjax[export] is not installed")

# 5 faces x 62 characters = 310 real glyphs, rendered as a scan would show them.
FACES = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerifCondensed-Italic.ttf",
)


@pytest.fixture(scope="module")
def glyph_images():
    return [render_char(c, face) for face in FACES for c in CLASSES]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _export(capsys, tmp_path, checkpoint, *extra):
    out = tmp_path / "model.onnx"
    code, stdout, err = run_cli(capsys, "export", "--checkpoint", checkpoint, "--out", out, *extra)
    assert code == 0, err
    assert str(out) in stdout
    return out


def _assert_same_predictions(onnx_path, predictor, images):
    x = predictor.preprocess(images)
    expected = predictor.probabilities(x)
    got = _session(onnx_path).run(["probabilities"], {"images": x})[0]
    assert got.shape == expected.shape == (len(images), len(CLASSES))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "charjax.onnx"
    export_onnx(ExportConfig("pretrained", out))
    return out


def test_bundled_model_in_onnxruntime_gives_predictors_probabilities(bundled_onnx, glyph_images):
    predictor = Predictor.load(default_checkpoint())
    _assert_same_predictions(bundled_onnx, predictor, glyph_images)


def test_the_readme_example_prints_what_charjax_predict_prints(
    bundled_onnx, tmp_path, monkeypatch, capsys
):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Use a model outside Python: ONNX")[1].split("\n## ")[0]
    code = section.split("```python\n")[1].split("```")[0]
    shutil.copy(bundled_onnx, tmp_path / "charjax.onnx")
    letters = [render_char(c, face) for c, face in (("R", "DejaVuSerif.ttf"), ("g", FACES[0]))]
    expected = Predictor.load(default_checkpoint()).predict(letters, top_k=3)
    monkeypatch.chdir(tmp_path)
    for letter, prediction in zip(letters, expected, strict=True):
        letter.save("letter.png")
        exec(code, {})
        top3 = zip(prediction.chars, prediction.probs, strict=True)
        assert capsys.readouterr().out.splitlines() == [f"{c} {p:.1%}" for c, p in top3]


def test_freshly_trained_tiny_run_in_onnxruntime_gives_predictors_probabilities(
    tmp_path, capsys, tiny_run, glyph_images
):
    path = _export(capsys, tmp_path, tiny_run)
    _assert_same_predictions(path, Predictor.load(tiny_run), glyph_images)


def test_float32_input_takes_pixels_divided_by_255(tmp_path, capsys, tiny_run, glyph_images):
    path = _export(capsys, tmp_path, tiny_run, "--input", "float32")
    predictor = Predictor.load(tiny_run)
    x = predictor.preprocess(glyph_images[:40])
    got = _session(path).run(None, {"images": x.astype(np.float32) / 255.0})[0]
    np.testing.assert_allclose(got, predictor.probabilities(x), atol=1e-5, rtol=0)


def test_metadata_and_json_say_what_to_feed_and_batch_size_is_free(tmp_path, capsys, tiny_run):
    path = _export(capsys, tmp_path, tiny_run)
    session = _session(path)
    props = session.get_modelmeta().custom_metadata_map
    beside = json.loads(path.with_suffix(".json").read_text())
    predictor = Predictor.load(tiny_run)
    assert props["classes"] == beside["classes"] == CLASSES
    assert json.loads(props["preprocess"]) == beside["preprocess"] == predictor.spec.to_dict()
    assert beside["input"] == {**json.loads(props["input"]), "shape": ["N", 16, 16]}
    (image,) = session.get_inputs()
    assert image.type == "tensor(uint8)" and image.shape == ["N", 16, 16]
    for n in (1, 7):  # one graph for every batch size
        out = session.run(None, {"images": np.zeros((n, 16, 16), np.uint8)})[0]
        assert out.shape == (n, len(CLASSES))


def _random_variables(model, size, seed):
    """Variables of the model's shapes, drawn so no layer is the identity (resnet zero-inits
    its last scales) and the running statistics are not the initial 0 and 1 that folding
    would ignore. Drawn in numpy: jitting `init` costs more here than the whole test."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 1)))

    def draw(path, leaf):
        name, shape = jax.tree_util.keystr(path[-1:]), leaf.shape
        if name == "['kernel']":  # fan-in scaling keeps activations in range through the net
            return rng.normal(0, 1.5 / np.sqrt(np.prod(shape[:-1])), shape)
        if name in ("['scale']", "['var']"):
            return rng.uniform(0.3, 1.5, shape)
        return rng.normal(0, 0.2, shape)  # biases and means

    return jax.tree_util.tree_map_with_path(lambda p, a: draw(p, a).astype(np.float32), shapes)


@pytest.mark.parametrize("arch", model_names("classifier"))
@pytest.mark.parametrize("size", [20, 48])  # 20: odd maps get a padded pool; 48: stride 3
def test_every_classifier_exports_the_function_of_both_its_formulations(arch, size):
    variables = _random_variables(get_model(arch), size, seed=size)
    onnx = onnx_model(get_model(arch), variables, size, "uint8", {"classes": CLASSES})
    session = ort.InferenceSession(onnx.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, (6, size, size), np.uint8)
    # Log-probabilities: near-uniform outputs of random weights would hide errors in probs.
    got = np.log(session.run(None, {"images": x})[0])
    formulations = [{"fast": True}, {"fast": False}] if arch != "tiny" else [{}]
    for kw in formulations:
        # Jitted: op-by-op flax is many times slower to run than to compile here.
        logits = jax.jit(get_model(arch, **kw).apply)(variables, jnp.asarray(x)[..., None] / 255.0)
        np.testing.assert_allclose(
            got, jax.nn.log_softmax(logits), rtol=1e-5, atol=1e-5, err_msg=str(kw)
        )


def _assert_refused(capsys, tmp_path, out, *args, says):
    code, _, err = run_cli(capsys, "export", "--out", out, *args)
    assert code == 2
    assert err.startswith("charjax: error:") and says in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_missing_run_is_refused_and_an_old_export_stays(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    _assert_refused(capsys, tmp_path, out, "--checkpoint", tmp_path / "nope", says="nope")
    assert out.read_bytes() == b"the previous export"


def test_an_unwritable_output_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, says in (
        (tmp_path / "file" / "model.onnx", "not a directory"),
        (tmp_path / "file", "must end in .onnx"),
    ):
        _assert_refused(capsys, tmp_path, out, says=says)
    (tmp_path / "dir.onnx").mkdir()
    _assert_refused(capsys, tmp_path, tmp_path / "dir.onnx", says="is a directory")
    (tmp_path / "m.json").mkdir()  # where the description of m.onnx would go
    _assert_refused(capsys, tmp_path, tmp_path / "m.onnx", says="m.json: it is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "file", "m.json"]


def test_a_generative_run_is_refused(tmp_path, capsys, tiny_run):
    # A copy of the tiny run whose meta records a VAE: the recorded kind is what decides, and
    # training a real VAE would take most of this file's time.
    run = tmp_path / "vae"
    shutil.copytree(tiny_run, run)
    for meta in run.rglob("meta/metadata"):
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "kind": "vae"}))
    out = tmp_path / "out" / "vae.onnx"
    _assert_refused(capsys, tmp_path, out, "--checkpoint", run, says="not a character classifier")
    assert not (tmp_path / "out").exists()


def test_without_onnx_the_error_names_the_extra(tmp_path, capsys, tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails
    _assert_refused(capsys, tmp_path, tmp_path / "m.onnx", "--checkpoint", tiny_run,
                    says="charjax[export]")  # fmt: skip
