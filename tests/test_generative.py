"""Autoencoder, VAE and CVAE: shapes, the objective per kind, training, eval and sampling.

The trained runs are session fixtures shared with test_walk.py. Inits run with
non-partitionable threefry, which compiles rank-4 random draws several times faster on CPU
(see test_models.py); the code under test is the same either way.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import render_char, run_cli

from charjax import parallel
from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.errors import CharjaxError
from charjax.fit import fit
from charjax.generate import Generator, interpolate, lerp, slerp
from charjax.losses import (
    Classification,
    Reconstruction,
    objective_for,
    reconstruction_terms,
)
from charjax.models import build_model, get_model, model_names
from charjax.models.autoencoder import GENERATIVE_KINDS, AutoencoderOutput
from charjax.preprocess import PreprocessSpec
from charjax.step import create_train_state, jit_train_step, make_optimizer, make_schedule

KEYS = {"params": jax.random.key(0)}
SMALL = {"widths": (8, 16), "latent_dim": 8}  # the registered archs at test size


def _train(config: TrainConfig, workdir):
    with jax.threefry_partitionable(False):
        return fit(config, workdir, progress=False, echo=lambda s: None)


_TRAINED: dict[str, dict] = {}  # glyph cache -> runs, so test_walk.py trains nothing again


def trained_runs(glyph_cache, tmp_path_factory) -> dict:
    """Tiny trained runs: {"vae": ..., "cvae": ..., "classifier": ...} workdirs."""
    if str(glyph_cache) in _TRAINED:
        return _TRAINED[str(glyph_cache)]
    root = tmp_path_factory.mktemp("generative")
    common = dict(data=str(glyph_cache), image_size=16, batch_size=62, augment=0.0, lr=1e-2)
    out = {}
    for name, arch in (("vae", "vae-tiny"), ("cvae", "cvae-tiny")):
        out[name] = root / name
        _train(TrainConfig(arch=arch, steps=40, eval_every=20, log_every=10, **common), out[name])
    out["classifier"] = root / "classifier"
    _train(TrainConfig(arch="tiny", steps=10, eval_every=0, **common), out["classifier"])
    _TRAINED[str(glyph_cache)] = out
    return out


@pytest.fixture(scope="session")
def runs(glyph_cache, tmp_path_factory):
    return trained_runs(glyph_cache, tmp_path_factory)


GENERATIVE = [name for kind in GENERATIVE_KINDS for name in model_names(kind)]


@pytest.mark.parametrize("name", GENERATIVE)
@pytest.mark.parametrize("size", [16, 24, 32, 48])
def test_output_shapes(name, size):
    # eval_shape traces init and apply without compiling. Sizes that do not halve evenly
    # (24 -> 12 -> 6 -> 3 -> up to 24; 48 -> ... -> 6) come back at the input size too.
    model = get_model(name, image_size=size)
    x = jax.ShapeDtypeStruct((3, size, size, 1), jnp.float32)
    labels = jax.ShapeDtypeStruct((3,), jnp.int32)
    variables = jax.eval_shape(lambda x: model.init(KEYS, x), x)
    assert set(variables) == {"params"}
    out = jax.eval_shape(lambda v, x, y: model.apply(v, x, y, train=False), variables, x, labels)
    assert isinstance(out, AutoencoderOutput)
    assert out.logits.shape == (3, size, size, 1) and out.logits.dtype == jnp.float32
    assert out.mean.shape == (3, model.latent_dim)
    assert (out.logvar is None) == (not model.variational)
    z = jax.ShapeDtypeStruct((5, model.latent_dim), jnp.float32)
    decoded = jax.eval_shape(lambda v, z: model.apply(v, z, method="decode"), variables, z)
    assert decoded.shape == (5, size, size, 1)


def test_registry_kinds_choose_the_objective():
    assert isinstance(objective_for(TrainConfig(arch="tiny")), Classification)
    assert objective_for(TrainConfig(arch="autoencoder")) == Reconstruction(variational=False)
    assert objective_for(TrainConfig(arch="vae", beta=0.5)) == Reconstruction(beta=0.5)
    assert objective_for(TrainConfig(arch="cvae")).best_metric == "loss"
    assert get_model("vae").latent_dim == 64  # enc_v5's code size unless --latent-dim says
    with pytest.raises(CharjaxError, match="--latent-dim is for generative models"):
        build_model(TrainConfig(arch="tiny", latent_dim=8))
    with pytest.raises(CharjaxError, match="latent dim"):
        TrainConfig(arch="vae", latent_dim=0)
    with pytest.raises(CharjaxError, match="beta"):
        TrainConfig(arch="vae", beta=-1.0)


def test_kl_and_reconstruction_terms_on_known_values():
    x = jnp.zeros((2, 4, 4, 1))
    logits = jnp.full((2, 4, 4, 1), -20.0)  # sigmoid ~ 0: a perfect reconstruction of zeros
    mean = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    logvar = jnp.array([[0.0, 0.0], [0.0, jnp.log(2.0)]])
    terms = reconstruction_terms(AutoencoderOutput(logits, mean, logvar), x)
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2 per dim:
    # row 0: 0;  row 1: (1 + 1 - 1 - 0) / 2 + (2 + 0 - 1 - log 2) / 2 = 0.5 + 0.1534
    np.testing.assert_allclose(terms["kl"], [0.0, 1.0 - np.log(2.0) / 2], rtol=1e-5)
    np.testing.assert_allclose(terms["recon"], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(terms["se"], [0.0, 0.0], atol=1e-12)
    plain = reconstruction_terms(AutoencoderOutput(logits, mean, None), x)
    np.testing.assert_array_equal(plain["kl"], [0.0, 0.0])


def test_autoencoder_train_step_lowers_the_loss(glyph_cache):
    # The VAE and CVAE are trained by the `runs` fixture (the same models at this size);
    # test_fit_generative_runs checks that their loss went down.
    arch = "autoencoder"
    config = TrainConfig(
        arch=arch, image_size=16, lr=1e-2, augment=0.0, weight_decay=0.0, schedule="constant"
    )
    mesh = parallel.make_mesh()
    schedule = make_schedule(config, 100)
    model = get_model(arch, image_size=16, **SMALL)
    with jax.threefry_partitionable(False):
        state = create_train_state(model, config, make_optimizer(config, schedule), mesh)
    step = jit_train_step(config, schedule, mesh)
    cache = load_cache(glyph_cache)
    batch = {"image": cache.images[:32], "label": cache.labels[:32], "mask": np.ones(32, bool)}
    batch = parallel.put_batch({k: np.asarray(v) for k, v in batch.items()}, mesh)
    losses = []
    for _ in range(25):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"loss", "recon", "mse", "lr", "grad_norm", "param_norm"} <= set(metrics)
    assert "kl" not in metrics  # a plain autoencoder has no KL term
    assert 0.0 < float(metrics["mse"]) < 0.25


def _records(workdir, kind):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_fit_generative_runs(runs, name):
    train, evals = _records(runs[name], "train"), _records(runs[name], "eval")
    assert [r["step"] for r in train] == [10, 20, 30, 40]
    assert [r["step"] for r in evals] == [20, 40]
    assert all({"loss", "recon", "kl", "mse"} <= set(r) for r in train + evals)
    assert train[-1]["loss"] < 0.8 * train[0]["loss"]
    assert evals[-1]["loss"] < evals[0]["loss"]
    assert json.loads((runs[name] / "config.json").read_text())["kind"] == name


def test_fit_resumes_a_generative_run(runs, tmp_path):
    workdir = shutil.copytree(runs["vae"], tmp_path / "vae")
    evals = _records(workdir, "eval")
    config = TrainConfig.from_dict(json.loads((workdir / "config.json").read_text())["config"])
    # The same command again resumes (and finds nothing left to do).
    said = []
    with jax.threefry_partitionable(False):  # as the run was trained
        summary = fit(config, workdir, progress=False, echo=said.append)
    assert any("Resuming" in s and "from step 40 of 40" in s for s in said)
    assert summary["step"] == 40
    assert summary["best_val_loss"] == min(r["loss"] for r in evals)
    assert "best_val_accuracy" not in summary


def test_eval_reports_reconstruction_error_and_kl(runs, capsys):
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", runs["cvae"], "--json")
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "cvae" and report["n"] == 31
    assert report["loss"] == pytest.approx(report["recon"] + report["kl"], rel=1e-5)
    assert 0.0 < report["mse"] < 0.25
    code, out, _ = run_cli(capsys, "eval", "--checkpoint", runs["vae"], "--split", "val")
    assert code == 0 and "mean squared error" in out and "KL" in out


def test_generator_encode_decode_sample(runs):
    gen = Generator.load(runs["vae"])
    images = gen.preprocess([render_char("A"), render_char("z")])
    assert images.shape == (2, 16, 16) and images.dtype == np.uint8
    z = gen.encode(images)
    assert z.shape == (2, 8)
    glyphs = gen.decode(z)
    assert glyphs.shape == (2, 16, 16) and glyphs.min() >= 0.0 and glyphs.max() <= 1.0
    np.testing.assert_allclose(gen.reconstruct(images), glyphs, atol=1e-6)
    samples = gen.sample(70, seed=1, temperature=0.5)  # more than one padded batch bucket
    assert samples.shape == (70, 16, 16)
    np.testing.assert_array_equal(samples, gen.sample(70, seed=1, temperature=0.5))


def test_slerp_and_linear_agree_at_the_endpoints():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16).astype(np.float32), rng.normal(size=16).astype(np.float32)
    ts = np.linspace(0.0, 1.0, 7)
    lin, sph = interpolate(a, b, ts, "linear"), interpolate(a, b, ts, "slerp")
    for path in (lin, sph):
        np.testing.assert_allclose(path[0], a, atol=1e-6)
        np.testing.assert_allclose(path[-1], b, atol=1e-6)
    # In between they differ: slerp keeps the norm up where the straight line sags.
    assert np.linalg.norm(sph[3]) > np.linalg.norm(lin[3])
    np.testing.assert_allclose(slerp(a, 2 * a, ts), lerp(a, 2 * a, ts), atol=1e-5)  # parallel
    with pytest.raises(CharjaxError, match="unknown interpolation"):
        interpolate(a, b, ts, "cubic")


def test_plain_autoencoder_refuses_to_sample():
    model = get_model("autoencoder", image_size=16, **SMALL)
    x = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEYS, x), x)
    meta = {
        "kind": "autoencoder",
        "config": TrainConfig(arch="autoencoder", image_size=16).to_dict(),
        "preprocess": PreprocessSpec(size=16).to_dict(),
    }
    with pytest.raises(CharjaxError, match="no known distribution"):
        Generator(model, variables, meta).sample(4)
