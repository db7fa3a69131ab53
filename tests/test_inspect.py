"""`charjax show` and `charjax filters` on a tiny trained model: layers, pictures, bad names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import render_char, run_cli
from PIL import Image

from charjax.models import get_model
from charjax.predict import Predictor
from charjax.viz.activations import SHEET_WIDTH, capture, layer_shapes, maximize_filters
from charjax.viz.grid import HEADER, MARGIN


def _traced_layers(arch: str, size: int = 32) -> dict[str, tuple[int, ...]]:
    """capture() of a freshly built model, traced only (no arrays computed)."""
    model = get_model(arch)
    x = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
    names: list[str] = []

    def forward(v, x):
        acts = capture(model, v, x)
        names.extend(acts)  # the dict eval_shape returns is sorted; this is capture's order
        return acts

    shapes = jax.eval_shape(forward, variables, x)
    return {name: shapes[name].shape[1:] for name in names}


def test_capture_names_every_layer_in_call_order():
    resnet = _traced_layers("resnet-small")
    top = [name for name in resnet if "/" not in name]
    assert top == ["stem_conv", "stem_norm", "ResNetBlock_0", "ResNetBlock_1", "ResNetBlock_2",
                   "Dense_0"]  # fmt: skip
    assert resnet["ResNetBlock_1/conv_proj"] == (8, 8, 64)
    # Dropout is the identity at inference and the model's output is Dense_1 again: both left out.
    cnn = [name for name in _traced_layers("cnn-small") if "/" not in name]
    assert cnn == ["Conv_0", *(f"SeparableConv_{i}" for i in range(4)), "Dense_0", "Dense_1"]


def test_layer_shapes_of_a_run(tiny_run):
    shapes = layer_shapes(Predictor.load(tiny_run))
    assert shapes == {"Conv_0": (16, 16, 8), "Conv_1": (8, 8, 16), "Dense_0": (62,)}


def test_show_writes_the_input_and_every_layer(tiny_run, tmp_path, capsys):
    render_char("R").save(tmp_path / "R.png")
    out = tmp_path / "act.png"
    code, stdout, err = run_cli(capsys, "show", "--checkpoint", str(tiny_run),
                                str(tmp_path / "R.png"), "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(out)
    # Sections, each HEADER + picture + MARGIN tall: the input at 8x zoom (128), Conv_0 as one
    # row of 64 px maps, Conv_1's 16 maps in two rows (2 * 64 + gap 2), Dense_0 as the 3 rows
    # of 24 px class cells (76), the same for the probabilities.
    pictures = [128, 64, 130, 76, 76]
    height = MARGIN + sum(HEADER + h + MARGIN for h in pictures)
    image = Image.open(out)
    assert image.size == (SHEET_WIDTH + 2 * MARGIN, height) and image.mode == "RGB"
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    # Negative and positive activations look different: some pixels blue, some red.
    assert (pixels[:, 2] > pixels[:, 0] + 80).any() and (pixels[:, 0] > pixels[:, 2] + 80).any()


def test_filter_optimisation_raises_the_target_activation(tiny_run):
    predictor = Predictor.load(tiny_run)
    result = maximize_filters(predictor, "Conv_1", steps=20)
    assert result.images.shape == (16, 16, 16)
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    # Measured again here, independently of the optimiser: filter f's mean on image f.
    acts = capture(predictor.model, predictor.variables, jnp.asarray(result.images)[..., None])
    reached = np.asarray(acts["Conv_1"]).mean(axis=(1, 2))[np.arange(16), np.arange(16)]
    np.testing.assert_allclose(reached, result.after, rtol=1e-4, atol=1e-4)
    assert (result.after > result.before).all()
    # And above what the filter reaches on any of 64 random images of the full pixel range.
    noise = jax.random.uniform(jax.random.PRNGKey(1), (64, 16, 16, 1))
    by_noise = np.asarray(capture(predictor.model, predictor.variables, noise)["Conv_1"])
    assert (result.after > by_noise.mean(axis=(1, 2)).max(axis=0)).all()


def test_filters_command_writes_one_tile_per_filter(tiny_run, tmp_path, capsys):
    out = tmp_path / "filters.png"
    code, stdout, err = run_cli(capsys, "filters", "--checkpoint", str(tiny_run), "--layer",
                                "Conv_0", "--steps", "10", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(out) and "Conv_0: 8 filters" in err
    # 8 tiles of 64 px (16 px at 4x) plus a 16 px label, 4 to a row: 2 rows, 4 px apart.
    width, height = Image.open(out).size
    assert height == MARGIN + HEADER + (2 * 80 + 4) + MARGIN
    assert width >= 4 * 64 + 3 * 4 + 2 * MARGIN


@pytest.mark.parametrize("command", ["filters", "show"])
def test_a_bad_layer_name_lists_the_valid_ones(tiny_run, tmp_path, capsys, command):
    render_char("R").save(tmp_path / "R.png")
    extra = [str(tmp_path / "R.png")] if command == "show" else []
    code, _, err = run_cli(capsys, command, "--checkpoint", str(tiny_run), "--layer", "conv9",
                           *extra, "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (
        "charjax: error: tiny has no layer 'conv9'; choose one of: Conv_0, Conv_1, Dense_0"
    )
    assert not (tmp_path / "x.png").exists()
