"""Every faster formulation computes the same function as the plain one: forward and gradients.

The CPU formulations in `charjax.models.layers` (and the models' `fast=True`, the default)
must be drop-ins: the same parameters, the same outputs and the same gradients to float32
rounding. These tests compare each against the plain XLA / flax op, and whole models with
`fast=True` against `fast=False`. No timings here; speed is benchmarks/' business.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from charjax import backend
from charjax.models import get_model, layers

NHWC = ("NHWC", "HWIO", "NHWC")


def _normal(shape, seed=0, scale=1.0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, dtype)


def _assert_close(actual, expected, rtol=1e-5):
    """Each leaf equal to within rtol of the leaf's largest magnitude (float32 rounding)."""
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        scale = max(float(jnp.abs(e).max()), 1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=rtol * scale)


def _value_and_grads(f, *args):
    """f's output and the gradients of a random projection of it w.r.t. every argument."""
    out = f(*args)
    cotangent = _normal(out.shape, seed=99)
    grads = jax.grad(lambda *a: jnp.sum(f(*a) * cotangent), argnums=tuple(range(len(args))))
    return out, grads(*args)


def _lax_conv(groups, padding="SAME"):
    return lambda x, k: lax.conv_general_dilated(
        x, k, (1, 1), padding, dimension_numbers=NHWC, feature_group_count=groups
    )


@pytest.mark.parametrize(
    "x_shape, k_shape, padding",
    [
        ((3, 16, 16, 8), (3, 3, 1, 8), "SAME"),  # depthwise, as cnn-small's separable convs
        ((2, 7, 5, 32), (3, 3, 1, 32), "SAME"),  # odd, non-square map
        ((2, 3, 3, 160), (3, 3, 1, 160), "SAME"),  # the smallest map cnn-small sees at 48 px
        ((2, 9, 9, 4), (5, 5, 1, 4), "SAME"),  # a bigger window
        ((2, 8, 8, 6), (3, 3, 1, 6), "VALID"),
        ((3, 32, 32, 1), (3, 3, 1, 8), "SAME"),  # one input channel: cnn-small's first conv
        ((2, 11, 11, 1), (5, 5, 1, 3), "VALID"),
    ],
)
def test_shift_conv_equals_lax_conv(x_shape, k_shape, padding):
    x, k = _normal(x_shape, 1), _normal(k_shape, 2, scale=0.3)
    groups = x_shape[-1]
    expected = _value_and_grads(_lax_conv(groups, padding), x, k)
    actual = _value_and_grads(lambda x, k: layers.shift_conv(x, k, padding), x, k)
    _assert_close(actual, expected)


def test_pointwise_conv_equals_lax_conv():
    x, k = _normal((2, 6, 6, 72), 1), _normal((1, 1, 72, 160), 2, scale=0.1)
    _assert_close(
        _value_and_grads(layers.pointwise_conv, x, k), _value_and_grads(_lax_conv(1), x, k)
    )


@pytest.mark.parametrize(
    "x_shape, k_shape, groups, strides, expected",
    [
        ((2, 8, 8, 8), (3, 3, 1, 8), 8, (1, 1), "shift"),
        ((2, 8, 8, 1), (3, 3, 1, 8), 1, (1, 1), "shift"),
        ((2, 8, 8, 8), (1, 1, 8, 16), 1, (1, 1), "dot"),
        ((2, 8, 8, 8), (3, 3, 8, 16), 1, (1, 1), "lax"),  # a dense 3x3 conv: XLA's is fastest
        ((2, 8, 8, 1), (3, 3, 1, 8), 1, (2, 2), "lax"),  # strided (resnet's stem)
        ((2, 8, 8, 8), (3, 3, 2, 8), 4, (1, 1), "lax"),  # grouped, not depthwise
    ],
)
def test_conv_dispatch_picks_a_formulation_and_computes_the_same(
    x_shape, k_shape, groups, strides, expected
):
    x, k = _normal(x_shape, 1), _normal(k_shape, 2, scale=0.3)
    dn = lax.conv_dimension_numbers(x_shape, k_shape, NHWC)
    args = (x, k, strides, "SAME")
    assert layers._formulation(x, k, strides, "SAME", None, None, dn, groups) == expected
    kw = dict(dimension_numbers=dn, feature_group_count=groups)
    _assert_close(layers.conv_general_dilated(*args, **kw), lax.conv_general_dilated(*args, **kw))


def _batch_norms(**kw):
    common = dict(momentum=0.9, epsilon=1e-5, **kw)
    return layers.BatchNorm(**common), nn.BatchNorm(**common)


@pytest.mark.parametrize("scale_init", [nn.initializers.ones, nn.initializers.zeros])
def test_batch_norm_has_flax_variables(scale_init):
    ours, theirs = _batch_norms(use_running_average=False, scale_init=scale_init)
    x = _normal((4, 5, 5, 12))
    a = ours.init(jax.random.key(0), x)
    b = theirs.init(jax.random.key(0), x)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    _assert_close(a, b, rtol=0)


def test_batch_norm_train_equals_flax_forward_grads_and_running_stats():
    x = _normal((8, 6, 6, 16), 1, scale=2.0) + 0.5
    ours, theirs = _batch_norms(use_running_average=False)
    variables = theirs.init(jax.random.key(0), x)
    variables = jax.tree.map(lambda v: v + 0.3 * _normal(v.shape, 5), variables)

    def run(module):
        def f(x, params):
            y, _ = module.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                mutable=["batch_stats"],
            )
            return y

        _, stats = module.apply(variables, x, mutable=["batch_stats"])
        return _value_and_grads(f, x, variables["params"]), stats

    (out_a, grads_a), stats_a = run(ours)
    (out_b, grads_b), stats_b = run(theirs)
    _assert_close(out_a, out_b)
    _assert_close(grads_a, grads_b, rtol=1e-4)  # dx is a difference of similar terms
    _assert_close(stats_a, stats_b)


def test_batch_norm_eval_and_bfloat16_match_flax():
    x = _normal((4, 3, 3, 8), 1)
    for dtype in (jnp.float32, jnp.bfloat16):
        ours, theirs = _batch_norms(use_running_average=True, dtype=dtype)
        variables = jax.tree.map(
            lambda v: v + 0.2 * jnp.abs(_normal(v.shape, 3)), theirs.init(jax.random.key(0), x)
        )
        a, b = ours.apply(variables, x.astype(dtype)), theirs.apply(variables, x.astype(dtype))
        assert a.dtype == b.dtype == dtype
        _assert_close(a.astype(jnp.float32), b.astype(jnp.float32), rtol=1e-2)


def _model_pair(arch, dtype=jnp.float32):
    return get_model(arch, dtype=dtype), get_model(arch, fast=False, dtype=dtype)


def _train_outputs_and_grads(model, variables, x):
    """Gradients of a projection of the train-mode logits, the logits and new batch stats."""

    def f(params):
        out, updates = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            rngs={"dropout": jax.random.key(3)},
            mutable=["batch_stats"],
        )
        return jnp.sum(out * jnp.linspace(-1.0, 1.0, 62)), (out, updates)

    # Jitted: one compile costs less than running hundreds of ops eagerly.
    return jax.jit(jax.grad(f, has_aux=True))(variables["params"])


def _random_variables(model, x, dtype=jnp.float32):
    """Variables shaped as `model.init` makes them, filled with random numbers (no scale is
    at its trivial init), from numpy: a real init costs seconds of compilation."""
    shapes = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)
    rng = np.random.default_rng(7)

    def fill(path, leaf):
        fan_in = max(1, int(np.prod(leaf.shape[:-1])))
        if path[-1].key == "var":
            return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), dtype)
        return jnp.asarray(rng.normal(0, fan_in**-0.5, leaf.shape), dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("arch", ["cnn-small", "resnet-small"])
def test_fast_model_initialises_the_plain_models_variables(arch):
    # The same names, shapes and initial values: a checkpoint of either loads into the other.
    fast, plain = _model_pair(arch)
    x = jnp.zeros((1, 32, 32, 1))
    with jax.threefry_partitionable(False):  # compiles faster on CPU
        init = lambda model: jax.jit(model.init)({"params": jax.random.key(0)}, x)
        _assert_close(init(fast), init(plain), rtol=0)


@pytest.mark.parametrize("arch", ["cnn-small", "resnet-small"])
@pytest.mark.parametrize("size", [32, 64])
def test_fast_model_is_the_plain_model(arch, size):
    fast, plain = _model_pair(arch)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, size, size, 1)), jnp.float32)
    variables = _random_variables(plain, x)
    apply = lambda model: jax.jit(model.apply)(variables, x)
    _assert_close(apply(fast), apply(plain))
    grads_a, (out_a, stats_a) = _train_outputs_and_grads(fast, variables, x)
    grads_b, (out_b, stats_b) = _train_outputs_and_grads(plain, variables, x)
    _assert_close(out_a, out_b)
    _assert_close(stats_a, stats_b)
    _assert_close(grads_a, grads_b, rtol=1e-4)


def test_fast_cnn_is_the_plain_cnn_in_float64_at_48px():
    # At 48 px cnn-small's small maps hold windows whose maxima differ by a rounding error,
    # so in float32 the two formulations' last-bit differences can send a max pool's gradient
    # to different inputs. In float64 the rounding is far below those gaps: the functions
    # are the same.
    with jax.enable_x64(True):
        fast, plain = _model_pair("cnn-small", dtype=jnp.float64)
        x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 48, 48, 1)))
        variables = _random_variables(plain, x, jnp.float64)
        grads_a, (out_a, _) = _train_outputs_and_grads(fast, variables, x)
        grads_b, (out_b, _) = _train_outputs_and_grads(plain, variables, x)
        _assert_close(out_a, out_b, rtol=1e-10)
        _assert_close(grads_a, grads_b, rtol=1e-10)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "--xla_cpu_experimental_ynn_fusion_type="),
        # A user's own value wins, and their other flags are kept.
        (
            {"XLA_FLAGS": "--xla_dump_to=/tmp/d --xla_cpu_experimental_ynn_fusion_type=X"},
            "--xla_dump_to=/tmp/d --xla_cpu_experimental_ynn_fusion_type=X",
        ),
        ({"CHARJAX_XLA_DEFAULTS": "0"}, None),
    ],
)
def test_backend_flag_rules(env, expected):
    env = dict(env)
    backend.configure(env)
    assert env.get("XLA_FLAGS") == expected
    backend.configure(env)  # idempotent
    assert env.get("XLA_FLAGS") == expected
