"""Per-layer forward + backward time of each formulation in charjax.models.layers vs the plain op.

This is how the per-layer choices in `charjax.models.layers` were made: every conv and batch
norm of cnn-small and resnet-small, at its real shape (batch 128), timed as a jitted
value-and-gradient (w.r.t. input and parameters; w.r.t. parameters only for a first layer,
whose input needs no gradient) in interleaved rounds.

    .venv/bin/python benchmarks/layers.py [--sizes 32 64] [--batch 128] [--json out.json]
    .venv/bin/python benchmarks/layers.py --sizes 32 --conv-variants   # + the rejected ones

`--conv-variants` adds, for resnet-small's dense 3x3 convs, the other ways of having XLA
compute the same convolution and gradients that were tried and rejected (README "Tried and
rejected"): NCHW dimension numbers, and a custom VJP whose kernel gradient is a convolution
with swapped dimension numbers, a 3-D convolution, or XLA's own after a two-pass transpose.
"""

import argparse
import sys

import flax.linen as nn
import harness
import jax
import jax.numpy as jnp
import numpy as np
from harness import Contender
from jax import lax

from charjax.models import layers

NHWC = ("NHWC", "HWIO", "NHWC")


def _lax_conv(groups, stride=1):
    return lambda x, k: lax.conv_general_dilated(
        x, k, (stride, stride), "SAME", dimension_numbers=NHWC, feature_group_count=groups
    )


def fast_conv(groups, stride=1):
    """The conv as charjax's models call it (`charjax.models.layers.conv_general_dilated`)."""

    def f(x, k):
        dn = lax.conv_dimension_numbers(x.shape, k.shape, NHWC)
        return layers.conv_general_dilated(
            x, k, (stride, stride), "SAME", dimension_numbers=dn, feature_group_count=groups
        )

    return f


def _pads(k):
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def _nchw_conv(x, k):
    # The same conv on NCHW / OIHW operands: XLA:CPU's layout assignment turns it into the
    # very program of the NHWC one (the same optimized HLO), so it can only tie.
    y = lax.conv_general_dilated(
        jnp.transpose(x, (0, 3, 1, 2)), jnp.transpose(k, (3, 2, 0, 1)), (1, 1), "SAME",
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )  # fmt: skip
    return jnp.transpose(y, (0, 2, 3, 1))


def _kgrad_swapped(x, dy, kh, kw):
    # dy is the lhs (its channels the conv's batch, its batch the features), x the rhs.
    xp = jnp.pad(x, ((0, 0), _pads(kh), _pads(kw), (0, 0)))
    pad = ((kh - 1, kh - 1), (kw - 1, kw - 1))
    out = lax.conv_general_dilated(dy, xp, (1, 1), pad, dimension_numbers=("CHWN", "IHWO", "HWCN"))
    return out[::-1, ::-1]


def _kgrad_3d(x, dy, kh, kw):
    # x as [1, H, W, Ci, B] (spatial H, W, Ci; features B), dy as the kernel [H, W, 1, B, Co]:
    # the output [1, kh, kw, Ci, Co] is the kernel gradient in HWIO, with no transpose after.
    xt = jnp.transpose(x, (1, 2, 3, 0))[None]
    dyt = jnp.transpose(dy, (1, 2, 0, 3))[:, :, None]
    pad = (_pads(kh), _pads(kw), (0, 0))
    dn = ("NDHWC", "DHWIO", "NDHWC")
    return lax.conv_general_dilated(xt, dyt, (1, 1, 1), pad, dimension_numbers=dn)[0]


def _kgrad_blocked(x, dy, kh, kw, block=8):
    # XLA's own kernel-gradient conv, but x's [B, H, W, C] -> [C, H, W, B] transpose (the
    # costliest op of the backward pass) in two cache-friendlier passes: a product with an
    # 8x8 identity keeps XLA from merging them back into one transpose.
    b, h, w, c = x.shape
    eye = jnp.eye(block, dtype=x.dtype)
    t = lax.dot_general(x.reshape(b // block, block, -1), eye, (((1,), (0,)), ((), ())))
    xt = jnp.transpose(t.reshape(b // block, h * w, c, block), (2, 1, 0, 3)).reshape(c, h, w, b)
    dyt = jnp.transpose(dy, (1, 2, 0, 3))  # [H, W, B, Co]
    dn = ("NHWC", "HWIO", "NHWC")
    out = lax.conv_general_dilated(xt, dyt, (1, 1), (_pads(kh), _pads(kw)), dimension_numbers=dn)
    return jnp.transpose(out, (1, 2, 0, 3))


def _custom_kernel_grad(kgrad):
    """A stride-1 SAME conv whose input gradient is autodiff's and kernel gradient `kgrad`."""
    conv = _lax_conv(1)

    @jax.custom_vjp
    def f(x, k):
        return conv(x, k)

    def bwd(res, dy):
        x, k = res
        _, vjp_x = jax.vjp(lambda x: conv(x, k), x)
        return vjp_x(dy)[0], kgrad(x, dy, *k.shape[:2]).astype(k.dtype)

    f.defvjp(lambda x, k: (conv(x, k), (x, k)), bwd)
    return f


CONV_VARIANTS = {
    "NCHW dims": _nchw_conv,
    "kernel grad: swapped dims": _custom_kernel_grad(_kgrad_swapped),
    "kernel grad: 3-D conv": _custom_kernel_grad(_kgrad_3d),
    "kernel grad: 2-pass transpose": _custom_kernel_grad(_kgrad_blocked),
}


def _batch_norm(module):
    # Statistics as an argument, not constants: XLA would fold the plain version's reductions
    # over them at compile time.
    def f(x, p):
        y, _ = module.apply(p, x, mutable=["batch_stats"])
        return y

    return f


def _timed(f, x, p, first_layer):
    """A run(n) doing n jitted value-and-grad calls of sum(f(x, p) * g)."""
    g = jnp.asarray(np.random.default_rng(1).normal(size=jax.eval_shape(f, x, p).shape))
    argnums = 1 if first_layer else (0, 1)
    step = jax.jit(jax.value_and_grad(lambda x, p: jnp.sum(f(x, p) * g), argnums=argnums))

    def run(n):
        for _ in range(n):
            out = step(x, p)
        jax.block_until_ready(out)

    return run


def layer_cases(size):
    """(name, input shape, kernel/param shape, groups, stride, first layer) of both models."""
    cases = [("cnn conv 3x3 1>8", (size, size, 1), (3, 3, 1, 8), 1, 1, True)]
    h, c = size // 2, 8
    for width in (32, 72, 160, 512):
        cases.append((f"cnn depthwise {h}x{h}x{c}", (h, h, c), (3, 3, 1, c), c, 1, False))
        cases.append((f"cnn pointwise {c}>{width}", (h, h, c), (1, 1, c, width), 1, 1, False))
        h, c = max(1, -(-h // 2)), width
    stride = max(1, round(size / 16))
    k = 3 if stride <= 2 else stride + 1
    cases.append((f"resnet stem {k}x{k}/{stride}", (size, size, 1), (k, k, 1, 32), 1, stride, True))
    for h, cin, cout in ((16, 32, 32), (8, 32, 64), (8, 64, 64), (4, 64, 128), (4, 128, 128)):
        cases.append(
            (f"resnet conv {h}x{h} {cin}>{cout}", (h, h, cin), (3, 3, cin, cout), 1, 1, False)
        )
    for h, cin, cout in ((8, 32, 64), (4, 64, 128)):
        cases.append((f"resnet proj {cin}>{cout}", (h, h, cin), (1, 1, cin, cout), 1, 1, False))
    for h, ch in ((16, 32), (8, 64), (4, 128)):
        cases.append((f"resnet batchnorm {h}x{h}x{ch}", (h, h, ch), "bn", 1, 1, False))
    return cases  # fmt: skip


def build(size, batch, conv_variants=False):
    rng = np.random.default_rng(0)
    out = []
    for name, x_shape, k_shape, groups, stride, first in layer_cases(size):
        x = jnp.asarray(rng.normal(size=(batch, *x_shape)), jnp.float32)
        group = f"{size}px {name}"
        if k_shape == "bn":
            common = dict(use_running_average=False, momentum=0.9, epsilon=1e-5)
            c = x_shape[-1]
            p = {
                "params": {"scale": jnp.ones(c), "bias": jnp.zeros(c)},
                "batch_stats": {"mean": jnp.zeros(c), "var": jnp.ones(c)},
            }
            pairs = [
                ("plain (nn.BatchNorm)", _batch_norm(nn.BatchNorm(**common))),
                ("charjax (layers.BatchNorm)", _batch_norm(layers.BatchNorm(**common))),
            ]
        else:
            p = jnp.asarray(rng.normal(size=k_shape) * 0.1, jnp.float32)
            dn = lax.conv_dimension_numbers(x.shape, p.shape, NHWC)
            how = layers._formulation(x, p, (stride,) * 2, "SAME", None, None, dn, groups)
            pairs = [
                ("plain (lax conv)", _lax_conv(groups, stride)),
                (f"charjax ({how})", fast_conv(groups, stride)),
            ]
            if conv_variants and name.startswith("resnet conv") and batch % 8 == 0:
                pairs += list(CONV_VARIANTS.items())
        for label, f in pairs:
            out.append(Contender(label, group, _timed(f, x, p, first), batch))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--conv-variants", action="store_true", help="also the rejected 3x3 convs")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    contenders = [c for s in args.sizes for c in build(s, args.batch, args.conv_variants)]
    for c in contenders:
        c.warmup()
    for _ in range(args.rounds):
        for c in contenders:
            c.time_round(args.reps)
    rows, results, plain = [], [], {}
    for c in contenders:
        s = c.summary()
        results.append(s)
        if c.name.startswith("plain"):
            plain[c.group] = s["median_s"]
        speedup = plain[c.group] / s["median_s"]
        rows.append([c.group, c.name, harness.fmt_ms(s), f"{speedup:.2f}x"])
    harness.print_table(
        [f"layer (batch {args.batch})", "formulation", "fwd+bwd ms", "speedup"], rows
    )
    harness.write_json(
        args.json,
        {
            "benchmark": "layers",
            "argv": sys.argv[1:],
            "machine": harness.machine(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
