"""Model registry, architectures, size/cost helpers and the `charjax models` command."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from charjax.cli.main import main
from charjax.errors import CharjaxError
from charjax.models import MODELS, get_model, model_names
from charjax.models.cnn import max_pool_2x2
from charjax.models.info import count_params, forward_flops
from charjax.models.resnet import stem_stride

KEYS = {"params": jax.random.key(0), "dropout": jax.random.key(1)}


def _images(batch, size, seed=0):
    # numpy, not jax.random: compiling a rank-4 jax draw costs ~1 s on CPU.
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(size=(batch, size, size, 1)), jnp.float32)


def _variables(model, size=32):
    """Variables shaped as `model.init` makes them, filled from numpy.

    A real jitted init takes 2-7 s per model to compile on this CPU (mostly its random
    draws), so tests other than `test_real_init` use these; `apply` is the real thing.
    """
    x = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(KEYS, x, train=False), x)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape)
        if name in ("bias", "mean"):
            return jnp.zeros(leaf.shape)
        fan_in = math.prod(leaf.shape[:-1])  # kernels: [..., in, out]
        return jnp.asarray(rng.normal(0, fan_in**-0.5, leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_real_init():
    model = get_model("tiny")
    x = _images(2, 32)
    # Non-partitionable threefry: jax's default compiles rank-4 draws several times slower
    # on CPU (5.5 s vs 0.8 s here); the init itself is the same code either way.
    with jax.threefry_partitionable(False):
        variables = jax.jit(lambda keys, x: model.init(keys, x, train=False))(KEYS, x)
    expected = jax.eval_shape(lambda x: model.init(KEYS, x, train=False), x)
    assert jax.tree.structure(variables) == jax.tree.structure(expected)
    assert model.apply(variables, x).shape == (2, 62)


@pytest.mark.parametrize("name", model_names("classifier"))
@pytest.mark.parametrize("size", [16, 32, 48, 64, 128])
def test_output_shapes(name, size):
    # eval_shape traces init and apply without compiling, so every size is cheap to check.
    model = get_model(name)
    x = jax.ShapeDtypeStruct((3, size, size, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEYS, x, train=False), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (3, 62)
    assert logits.dtype == jnp.float32


@pytest.mark.parametrize("name", model_names("classifier"))
def test_forward_runs_and_is_deterministic_in_eval(name):
    model = get_model(name)
    variables = _variables(model)
    x = _images(2, 32)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    a, b = apply(variables, x), apply(variables, x)
    assert a.shape == (2, 62)
    assert bool(jnp.all(jnp.isfinite(a)))
    np.testing.assert_array_equal(a, b)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = get_model("resnet-small", dtype=jnp.bfloat16)
    x = jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEYS, x, train=False), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.dtype == jnp.float32


def test_train_mode_updates_batch_stats():
    model = get_model("resnet-small")
    variables = _variables(model)
    x = _images(4, 32)
    assert set(variables) == {"params", "batch_stats"}
    logits, updates = jax.jit(
        lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])
    )(variables, x, jax.random.key(2))
    assert logits.shape == (4, 62)
    before, after = variables["batch_stats"], updates["batch_stats"]
    assert jax.tree.structure(before) == jax.tree.structure(after)
    # Running means start at 0 and move towards the batch means (momentum 0.9).
    assert float(jnp.abs(after["stem_norm"]["mean"]).sum()) > 0.0


def test_train_mode_dropout_uses_the_rng():
    model = get_model("cnn-small")
    variables = _variables(model)
    x = _images(4, 32)
    assert set(variables) == {"params"}  # no batch norm, so no batch_stats
    apply = jax.jit(lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k}))
    a, b = apply(variables, x, jax.random.key(2)), apply(variables, x, jax.random.key(3))
    assert a.shape == (4, 62)
    assert not np.allclose(a, b)


def test_param_count_tiny():
    # conv 3x3, 1 -> 8:   3*3*1*8 + 8   =    80
    # conv 3x3, 8 -> 16:  3*3*8*16 + 16 = 1,168
    # dense 16 -> 62:     16*62 + 62    = 1,054
    # Global pooling makes it the same at every size.       total 2,302
    for size in (16, 32, 64):
        assert count_params(get_model("tiny"), size) == 2302


def test_param_count_cnn_small():
    # conv 3x3, 1 -> 8:                      3*3*1*8 + 8       =     80
    # separable (depthwise 3x3, no bias; pointwise 1x1 + bias): 9*cin + cin*cout + cout
    #   8 -> 32:    72 +    256 +  32 =  360
    #   32 -> 72:  288 +  2,304 +  72 =  2,664
    #   72 -> 160: 648 + 11,520 + 160 = 12,328
    #   160 -> 512: 1,440 + 81,920 + 512 = 83,872
    # dense 512 -> 178:                      512*178 + 178     = 91,314
    # dense 178 -> 62:                       178*62 + 62       = 11,098
    #                                                      total 201,716
    # The global max pool after the last pool keeps it the same at 64 px.
    for size in (32, 64):
        assert count_params(get_model("cnn-small"), size) == 201_716


def test_resnet_stem_keeps_first_stage_near_16_and_cost_flat():
    assert [stem_stride(s, 16) for s in (16, 32, 48, 64, 128)] == [1, 2, 3, 4, 8]
    model = get_model("resnet-small")
    f32, f64 = forward_flops(model, 32), forward_flops(model, 64)
    assert 5e6 < f32 < 50e6
    assert abs(f64 / f32 - 1) < 0.1  # 4x the pixels, about the same cost


def test_num_classes_and_overrides_reach_the_module():
    model = get_model("tiny", num_classes=10, dtype=jnp.bfloat16)
    assert (model.num_classes, model.dtype) == (10, jnp.bfloat16)
    x = jax.ShapeDtypeStruct((2, 16, 16, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(KEYS, x, train=False), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).shape == (2, 10)


def test_unknown_name_lists_choices():
    with pytest.raises(CharjaxError) as e:
        get_model("resnet-huge")
    for name in model_names():
        assert name in str(e.value)


def test_model_names_by_kind():
    assert set(model_names("classifier")) >= {"tiny", "cnn-small", "resnet-small"}
    assert model_names("no-such-kind") == []


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 6, 10, 1), (2, 7, 7, 2), (1, 1, 1, 4)])
def test_reshape_max_pool_equals_nn_max_pool(shape):
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    expected = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    np.testing.assert_array_equal(max_pool_2x2(x), expected)
    if shape[1] % 2 == 0 and shape[2] % 2 == 0:  # on even sizes SAME adds no padding
        valid = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        np.testing.assert_array_equal(max_pool_2x2(x), valid)


def test_cli_models_lists_every_model(capsys):
    try:
        main(["models", "--image-size", "32"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    for name in MODELS:
        assert name in out
    assert "MFLOP" in out
