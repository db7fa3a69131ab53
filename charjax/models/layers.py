"""Faster formulations of a few layers for XLA's CPU backend, as drop-ins for the plain ones.

Each function here computes the same function as its plain counterpart (forward and
gradients, to float rounding; tests/test_perf_equivalence.py checks every one) and consumes
the same parameters, so a model can switch between them without touching checkpoints. Which
formulation a model uses is chosen per layer shape, by measurement on CPU (see
benchmarks/layers.py); on GPU and TPU the plain XLA ops are already the fast path and are used.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def use_cpu_formulations() -> bool:
    """True when models should use the CPU formulations below (decided at trace time)."""
    return jax.default_backend() == "cpu"


def _same_pads(size: int, kernel: int) -> tuple[int, int]:
    total = kernel - 1  # stride 1
    return total // 2, total - total // 2


def _formulation(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dn, groups):
    """Which formulation computes this convolution fastest on CPU: "shift" (`shift_conv`),
    "dot" (a 1x1 conv as one matmul) or "lax" (XLA's own convolution)."""
    plain = (
        _is_default_nhwc(dn)
        and lhs.ndim == 4
        and all(s == 1 for s in window_strides)
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and padding in ("SAME", "VALID")
    )
    if not plain:
        return "lax"
    if rhs.shape[:2] == (1, 1) and groups == 1:
        return "dot"
    depthwise = groups == lhs.shape[-1] == rhs.shape[-1] and rhs.shape[2] == 1
    single_input = groups == 1 and lhs.shape[-1] == 1
    return "shift" if depthwise or single_input else "lax"


def _is_default_nhwc(dn) -> bool:
    # flax passes ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
    # out_spec=(0, 3, 1, 2)) for NHWC inputs and HWIO kernels.
    try:
        specs = (tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec))
    except AttributeError:
        return False
    return specs == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def pointwise_conv(x, kernel):
    """A 1x1 convolution as the matmul it is: x [B, H, W, C] @ kernel [1, 1, C, O].

    XLA lowers a 1x1 convolution's forward pass to a dot, but its kernel gradient to a
    convolution with both operands transposed in memory first; as a dot, autodiff gives a
    plain GEMM (cnn-small: 1.1x faster step)."""
    b, h, w, c = x.shape
    y = x.reshape(-1, c) @ kernel.reshape(c, -1)
    return y.reshape(b, h, w, -1)


def _pad_same(x, kh: int, kw: int):
    (t, b), (le, r) = _same_pads(x.shape[1], kh), _same_pads(x.shape[2], kw)
    return jnp.pad(x, ((0, 0), (t, b), (le, r), (0, 0)))


def _taps(xp, kh: int, kw: int):
    """The kh*kw shifted windows of a padded map [B, H+kh-1, W+kw-1, C], each [B, H, W, C]."""
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    return [xp[:, i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)]


def _shift_sum(xp, kernel):
    kh, kw = kernel.shape[:2]
    taps = _taps(xp, kh, kw)
    out = taps[0] * kernel[0, 0, 0]
    for t, k in zip(taps[1:], kernel.reshape(kh * kw, -1)[1:], strict=True):
        out = out + t * k  # [B, H, W, C or O]
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def shift_conv(x, kernel, padding: str = "SAME"):
    """A stride-1 conv whose every output channel reads one input channel, as shifted
    multiply-adds: depthwise convs (kernel [kh, kw, 1, C], x [B, H, W, C]) and convs of a
    single-channel input (kernel [kh, kw, 1, O], x [B, H, W, 1]).

    XLA's CPU backend runs these as grouped / tiny-K convolutions at a few GFLOP/s, and their
    gradients slower still. As kh*kw broadcasted multiply-adds they fuse into one loop; the
    input gradient is the same kind of loop, and the kernel gradient is written by hand
    (autodiff would materialise every tap's product before reducing it): one GEMM over
    stacked taps for a single-channel input, a GEMV per tap for a depthwise conv.
    On cnn-small's layers at batch 128: forward 15-60x, forward + backward 3-8x faster.
    """
    kh, kw = kernel.shape[:2]
    return _shift_sum(_pad_same(x, kh, kw) if padding == "SAME" else x, kernel)


def _shift_conv_fwd(x, kernel, padding):
    return shift_conv(x, kernel, padding), (x, kernel)


def _shift_conv_bwd(padding, res, dy):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    xp = _pad_same(x, kh, kw) if padding == "SAME" else x
    # Input gradient: autodiff of the shifted sum w.r.t. x alone (pads and adds; XLA drops it
    # when x is the model input).
    _, vjp_x = jax.vjp(lambda xp: _shift_sum(xp, kernel), xp)
    (dxp,) = vjp_x(dy)
    if padding == "SAME":
        (t, _), (le, _) = _same_pads(x.shape[1], kh), _same_pads(x.shape[2], kw)
        dx = dxp[:, t : t + x.shape[1], le : le + x.shape[2], :]
    else:
        dx = dxp
    taps = _taps(xp, kh, kw)
    c = dy.shape[-1]
    if x.shape[-1] == 1 and c > 1:  # single input channel: dW = taps @ dy, one GEMM
        # Taps stacked on a leading axis (contiguous copies); on the last axis, XLA's CPU
        # concatenate of 1-wide slices was 5x slower than the GEMM itself.
        patches = jnp.stack([t.reshape(-1) for t in taps])  # [kh*kw, N]
        dkernel = patches @ dy.reshape(-1, c)  # [kh*kw, O]
    else:  # depthwise: dW[tap, c] = sum over pixels of tap * dy
        dyf = dy.reshape(-1, c)
        dkernel = jnp.stack([_sum_rows(t.reshape(-1, c) * dyf) for t in taps])
    return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kw,
):
    """`lax.conv_general_dilated`, with the shapes that run faster as `shift_conv` or
    `pointwise_conv` on CPU sent there.

    Pass it to `flax.linen.Conv(conv_general_dilated=...)`: the module's parameters stay
    exactly as they are; only how XLA is asked to compute the convolution changes.
    """
    how = "lax"
    if use_cpu_formulations():
        how = _formulation(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
        )
    if how == "shift":
        return shift_conv(lhs, rhs, padding)
    if how == "dot":
        return pointwise_conv(lhs, rhs)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kw,
    )


def _sum_rows(x2d):
    """Sum over the rows of x2d [N, C], as a matrix-vector product: XLA's CPU backend runs a
    GEMV at memory speed, but a reduce over a leading axis 2-3x slower (measured)."""
    return jnp.ones((x2d.shape[0],), x2d.dtype) @ x2d


def _batch_stats(x):
    """Per-channel mean and biased variance of x [..., C] over all other axes, in float32,
    computed as flax's BatchNorm does (E[x^2] - E[x]^2, clipped at 0)."""
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    n = x.shape[0]
    mean, mean2 = _sum_rows(x) / n, _sum_rows(x * x) / n
    return mean, jnp.maximum(0.0, mean2 - mean * mean)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon: float):
    """Batch norm with batch statistics: (y, mean, var) for x [..., C], scale, bias [C].

    The same function as flax's `BatchNorm(use_running_average=False)`, with a hand-written
    backward pass: autodiff of the statistics costs several more passes over x, and XLA's
    CPU reductions over the batch axes are slow, so here the statistics and both reductions
    of the gradient are GEMVs and the rest one fused elementwise pass (forward + backward
    2-3x faster on resnet-small's layers; its train step ~1.15x). The statistics get no
    gradient: they only feed the running averages.
    """
    out, _ = _batch_norm_fwd(x, scale, bias, epsilon)
    return out


def _normalize(x, mean, var, scale, bias, epsilon, dtype):
    y = (x.astype(jnp.float32) - mean) * (lax.rsqrt(var + epsilon) * scale) + bias
    return y.astype(dtype)


def _batch_norm_fwd(x, scale, bias, epsilon):
    mean, var = _batch_stats(x)
    y = _normalize(x, mean, var, scale, bias, epsilon, x.dtype)
    return (y, mean, var), (x, mean, lax.rsqrt(var + epsilon), scale)


def _batch_norm_bwd(epsilon, res, cotangents):
    del epsilon
    x, mean, rstd, scale = res
    c = x.shape[-1]
    dy = cotangents[0].astype(jnp.float32).reshape(-1, c)
    xhat = (x.astype(jnp.float32).reshape(-1, c) - mean) * rstd
    dbias = _sum_rows(dy)
    dscale = _sum_rows(dy * xhat)
    dx = (scale * rstd) * (dy - (dbias + xhat * dscale) / dy.shape[0])
    return dx.reshape(x.shape).astype(x.dtype), dscale, dbias


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class BatchNorm(nn.Module):
    """`flax.linen.BatchNorm` over the last axis: the same variables ("scale", "bias"; batch
    stats "mean", "var"), defaults, float32 statistics and running-average update, but on CPU
    the training pass goes through `batch_norm_train`.

    Named BatchNorm so that flax names its instances as it named nn.BatchNorm's (BatchNorm_0,
    ...): a model can swap one for the other and its checkpoints still load.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", self.scale_init, (c,), jnp.float32)
        bias = self.param("bias", self.bias_init, (c,), jnp.float32)
        dtype = self.dtype or jnp.result_type(x, scale)
        if use_running_average:
            return _normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon, dtype)
        if use_cpu_formulations():
            y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
        else:  # autodiff through the statistics, as flax does
            mean, var = _batch_stats(x)
            y = _normalize(x, mean, var, scale, bias, self.epsilon, dtype)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(dtype)
