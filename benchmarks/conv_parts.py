"""resnet-small's 3x3 convolutions part by part: forward, input gradient, kernel gradient.

Each part of each of the six dense 3x3 convolutions of resnet-small's blocks (32 px, batch
128) is timed alone, charjax against PyTorch eager, so that the step's convolution work can be
compared where a profiler cannot time it (XLA:CPU returns from a convolution before its
thread pool is done; README "Where resnet-small's step goes"):

- charjax: the convolution as the models call it (`charjax.models.layers.conv_general_dilated`,
  NHWC, charjax's XLA flags), jitted: the forward pass, and each gradient as `jax.vjp` with
  respect to one argument (what the train step's backward pass computes for it, layout
  copies included);
- torch: `conv2d` and `aten.convolution_backward` asked for one gradient, channels_last
  (its fastest layout here) and NCHW, on torch's default threads (one per core).

Each side runs in its own worker process, in interleaved rounds (see harness.py).

    .venv/bin/python benchmarks/conv_parts.py [--rounds 7] [--reps 10] [--json out.json]
"""

import argparse
import importlib.util
import sys
from functools import partial
from pathlib import Path

import harness
import numpy as np
from harness import Contender

BATCH = 128
# (side, input channels, output channels) of the blocks' convolutions at 32 px, in order.
LAYERS = ((16, 32, 32), (16, 32, 32), (8, 32, 64), (8, 64, 64), (4, 64, 128), (4, 128, 128))
PARTS = ("forward", "input gradient", "kernel gradient")


def _arrays(side, cin, cout):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, side, side, cin)).astype(np.float32)
    k = (rng.normal(size=(3, 3, cin, cout)) * 0.1).astype(np.float32)
    g = rng.normal(size=(BATCH, side, side, cout)).astype(np.float32)
    return x, k, g


def jax_parts(side, cin, cout):
    """charjax's three parts of one layer, each a call with no arguments returning its result."""
    import jax
    from layers import fast_conv  # benchmarks/layers.py; here, so the torch worker skips JAX

    conv = fast_conv(1)
    fns = {
        "forward": lambda x, k, g: conv(x, k),
        "input gradient": lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0],
        "kernel gradient": lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0],
    }
    args = [jax.device_put(a) for a in _arrays(side, cin, cout)]
    return {part: partial(jax.jit(f), *args) for part, f in fns.items()}


def torch_parts(side, cin, cout, channels_last):
    """torch's three parts of the same layer on the same numbers (NCHW / OIHW tensors)."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    orders = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # NHWC -> NCHW, HWIO -> OIHW
    x, k, g = (
        torch.from_numpy(np.ascontiguousarray(a.transpose(t))).contiguous(memory_format=fmt)
        for a, t in zip(_arrays(side, cin, cout), orders, strict=True)
    )

    def backward(which):
        mask = (which == 0, which == 1, False)
        args = (g, x, k, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, mask)
        return lambda: torch.ops.aten.convolution_backward(*args)[which]

    return {
        "forward": lambda: torch.nn.functional.conv2d(x, k, padding=1),
        "input gradient": backward(0),
        "kernel gradient": backward(1),
    }


def as_hwio(part: str, torch_out) -> np.ndarray:
    """A torch part's result in the layout of charjax's (NHWC maps, HWIO kernels)."""
    order = (2, 3, 1, 0) if part == "kernel gradient" else (0, 2, 3, 1)
    return torch_out.numpy().transpose(order)


def _repeat(f, sync):
    def run(n):
        for _ in range(n):
            out = f()
        sync(out)

    return run


def build(spec: dict) -> list[Contender]:
    """The contenders of one worker: every part of every layer, for one side."""
    if spec["side"] == "jax":
        import jax

        sides, sync = {"charjax": jax_parts}, jax.block_until_ready
    else:  # eager: the result is ready when the call returns
        sides = {
            "torch channels_last": partial(torch_parts, channels_last=True),
            "torch": partial(torch_parts, channels_last=False),
        }
        sync = lambda out: None  # noqa: E731
    out = []
    for i, (side, cin, cout) in enumerate(LAYERS):
        layer = f"block conv {i + 1}: {side}x{side} {cin}>{cout}"
        for name, parts in sides.items():
            for part, f in parts(side, cin, cout).items():
                out.append(Contender(name, f"{layer} | {part}", _repeat(f, sync), BATCH))
    return out


def report(contenders, args):
    by_group: dict[str, dict[str, dict]] = {}
    for c in contenders:
        by_group.setdefault(c.group, {})[c.name] = c.summary()
    names = ["charjax", "torch channels_last", "torch"]
    rows, totals = [], {(n, p): 0.0 for n in names for p in PARTS}
    for group, members in by_group.items():
        layer, part = group.split(" | ")
        for n in names:
            if n in members:
                totals[n, part] += members[n]["median_s"]
        best = members.get("torch channels_last")
        ratio = f"{best['median_s'] / members['charjax']['median_s']:.2f}x" if best else ""
        cells = [harness.fmt_ms(members[n]) if n in members else "" for n in names]
        rows.append([layer, part, *cells, ratio])
    for part in PARTS:
        sums = [f"{totals[n, part] * 1e3:.1f}" if totals[n, part] else "" for n in names]
        rows.append(["all six (sum of medians)", part, *sums, ""])
    harness.print_table(
        ["layer (batch 128)", "part", *(f"{n} ms" for n in names), "charjax / torch CL speed"], rows
    )  # fmt: skip
    harness.write_json(
        args.json,
        {
            "benchmark": "conv_parts",
            "argv": sys.argv[1:],
            "machine": harness.machine(),
            "results": [c.summary() for c in contenders],
        },
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return harness.worker_main(build, args.worker)
    script = Path(__file__).resolve()
    workers = [harness.Worker(script, {"side": "jax"}, label="charjax")]
    if importlib.util.find_spec("torch"):
        workers.append(harness.Worker(script, {"side": "torch"}, label="torch"))
    else:
        print("torch is not installed (pip install -e '.[bench]'): charjax numbers only")
    report(harness.run_workers(workers, args.rounds, args.reps), args)


if __name__ == "__main__":
    main()
