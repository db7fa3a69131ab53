"""The compute-dtype policy: bfloat16 on GPU/TPU, float32 on CPU, params always float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charjax.backend import compute_dtype
from charjax.checkpoint import load_for_inference
from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.fit import fit
from charjax.models import build_model
from charjax.predict import Predictor


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("cpu", jnp.float32), ("gpu", jnp.bfloat16), ("cuda", jnp.bfloat16), ("tpu", jnp.bfloat16)],
)
def test_auto_dtype_follows_the_platform(platform, expected):
    assert compute_dtype("auto", platform) == expected


def test_explicit_dtype_wins_over_the_platform():
    assert compute_dtype("float32", "tpu") == jnp.float32
    assert compute_dtype("bfloat16", "cpu") == jnp.bfloat16


def test_auto_on_this_machine_follows_its_platform():
    # Whatever machine runs the tests: float32 on a CPU, bfloat16 on a GPU or TPU.
    expected = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    assert compute_dtype() == expected
    assert build_model(TrainConfig(arch="resnet-small")).dtype == expected


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(CharjaxError, match="unknown dtype 'float16'"):
        TrainConfig(dtype="float16")
    with pytest.raises(CharjaxError, match="unknown dtype"):
        compute_dtype("half")


def test_changing_dtype_does_not_block_a_resume():
    assert TrainConfig(dtype="auto").differences(TrainConfig(dtype="bfloat16")) == []


def test_bfloat16_run_keeps_float32_params_and_predicts(glyph_cache, tmp_path):
    config = TrainConfig(arch="tiny", data=str(glyph_cache), image_size=16, batch_size=62,
                         steps=20, lr=1e-2, augment=0.0, eval_every=0,
                         dtype="bfloat16")  # fmt: skip
    summary = fit(config, tmp_path / "run", progress=False, echo=lambda s: None)
    assert np.isfinite(summary["train"]["loss"])
    variables, _ = load_for_inference(tmp_path / "run")
    leaves = jax.tree.leaves(variables["params"])
    assert leaves and all(leaf.dtype == np.float32 for leaf in leaves)

    predictor = Predictor.load(tmp_path / "run")
    assert predictor.model.dtype == jnp.bfloat16  # the run's policy, reapplied at load
    probs = predictor.probabilities(np.zeros((3, 16, 16), np.uint8))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(-1), 1.0, atol=1e-3)


def test_bfloat16_resnet_computes_the_float32_function_to_bfloat16_precision():
    from charjax.models import get_model

    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 32, 32, 1)), jnp.float32)
    f32, bf16 = get_model("resnet-small"), get_model("resnet-small", dtype=jnp.bfloat16)
    variables = f32.init(jax.random.key(0), x)
    a, b = f32.apply(variables, x), bf16.apply(variables, x)
    assert b.dtype == jnp.float32  # logits come back float32 for the loss
    np.testing.assert_allclose(a, b, atol=0.02 * float(jnp.abs(a).max()))
    assert not np.allclose(a, b, atol=1e-6)  # it really computed in bfloat16
