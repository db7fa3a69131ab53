"""Input pipeline: iterator, device transfer and on-device augmentation throughput, and the
fraction of a real training loop's time spent waiting for data.

Stages, each timed alone (images/s; interleaved rounds as everywhere in benchmarks/):
- "iterator": `BatchIterator` batches on the host (permutation, gather, uint8), no transfer;
- "iterator + transfer": the same with `put` placing each batch on the device mesh, as fit does;
- "augment": the jitted on-device augmentation of a device batch (all distortions), and
  "augment, no noise" and "augment, no elastic" (the same config without additive noise or
  without the elastic displacement, to show their shares), and "augment, + outline" (with
  `--outline 0.1`'s hollowed glyphs, off by default);
- "train step": `charjax.step`'s jitted step on a fixed device batch (augmentation, forward,
  backward, AdamW, metrics).
Then "loop": the step fed by the iterator for --loop-steps steps, as `fit` runs it, reporting
the fraction of wall time the loop spent blocked in `next(iterator)`.

Images come from --data (a prepared cache, e.g. ~/.cache/charjax/fonts-32) or, by default,
random uint8 arrays of the same shape and size: the pipeline's cost does not depend on content.

    .venv/bin/python benchmarks/input_pipeline.py [--quick] [--json out.json]
"""

import argparse
import sys
import time

import harness
import jax
import numpy as np
from harness import Contender

from charjax import parallel
from charjax.augment import AugmentConfig, augment_batch
from charjax.config import TrainConfig
from charjax.data.cache import load_cache
from charjax.data.pipeline import BatchIterator
from charjax.models import build_model
from charjax.preprocess import model_input
from charjax.step import create_train_state, jit_train_step, make_optimizer, make_schedule


def _arrays(data, size, n):
    if data:
        arrays = load_cache(data).arrays("train")
        if arrays["image"].shape[1] != size:
            raise SystemExit(f"{data} holds {arrays['image'].shape[1]} px images, not {size}")
        return arrays
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        "label": rng.integers(0, 62, n).astype(np.int64),
    }


class _Stream:
    """An endless BatchIterator, recreated when closed, with `run(n)` pulling n batches."""

    def __init__(self, arrays, batch, put=None):
        self.make = lambda: BatchIterator(arrays, batch, seed=0, put=put, prefetch=2)
        self.it = self.make()

    def run(self, n):
        for _ in range(n):
            batch = next(self.it)
        jax.block_until_ready(batch)


def contenders(arch, size, batch, arrays, mesh, strength=1.0):
    group = f"{arch} {size}px b{batch}"
    put = lambda b: parallel.put_batch(b, mesh)
    host = {"image": arrays["image"][:batch], "label": arrays["label"][:batch].astype(np.int32)}
    device_batch = put({**host, "mask": np.ones(batch, bool)})

    def augment(cfg):
        f = jax.jit(lambda key, images: augment_batch(key, model_input(images), cfg))
        key = jax.random.key(0)

        def run(n):
            for i in range(n):
                out = f(jax.random.fold_in(key, i), device_batch["image"])
            out.block_until_ready()

        return run

    config = TrainConfig(arch=arch, image_size=size, batch_size=batch, augment=strength)
    schedule = make_schedule(config, 10_000)
    tx = make_optimizer(config, schedule)
    state = [create_train_state(build_model(config), config, tx, mesh)]
    step = jit_train_step(config, schedule, mesh)

    def train(n):
        for _ in range(n):
            state[0], metrics = step(state[0], device_batch)
        jax.block_until_ready(metrics)

    out = [
        Contender("iterator", group, _Stream(arrays, batch).run, batch),
        Contender("iterator + transfer", group, _Stream(arrays, batch, put).run, batch),
    ]
    if strength:  # at 0 the augment stages would time an identity
        # The default config, then without each of its costlier effects and with the optional
        # outlines (`train --outline 0.1`), to show their shares.
        for label, change in (
            ("", {}),
            (", no noise", {"noise": 0.0}),
            (", no elastic", {"elastic": 0.0}),
            (", + outline", {"outline": 0.1}),
        ):
            cfg = AugmentConfig(strength=strength, **change)
            out.append(Contender("augment" + label, group, augment(cfg), batch))
    out.append(Contender("train step", group, train, batch))
    return out, (state, step, put)


def data_wait(arrays, batch, state, step, put, steps):
    """Runs the step fed by the iterator as fit does; returns (images/s, fraction waiting)."""
    waited = 0.0
    with BatchIterator(arrays, batch, seed=1, put=put) as it:
        next(it)  # the thread is started and the first batch placed, as in a running fit
        start = time.perf_counter()
        for _ in range(steps):
            t = time.perf_counter()
            b = next(it)
            waited += time.perf_counter() - t
            state[0], metrics = step(state[0], b)
        jax.block_until_ready(metrics)
        total = time.perf_counter() - start
    return steps * batch / total, waited / total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["resnet-small", "cnn-small"])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, default=None, help="default: 128 (CPU), 1024 (GPU/TPU)")
    p.add_argument("--data", help="a prepared cache directory (default: random images)")
    p.add_argument("--examples", type=int, default=20_000, help="random dataset size")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=5, help="batches per round")
    p.add_argument("--loop-steps", type=int, default=60)
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--augment", type=float, default=1.0,
        help="augmentation strength (TrainConfig.augment); 0 leaves the augment stages out",
    )  # fmt: skip
    p.add_argument("--budget-s", type=float, help="stop timing rounds after this many seconds")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.budget_s if args.budget_s else None
    batch = args.batch or (1024 if harness.accelerator() else 128)
    rounds, loop_steps = (3, 20) if args.quick else (args.rounds, args.loop_steps)
    mesh = parallel.make_mesh()

    all_contenders, loops = [], []
    for size in args.sizes:
        arrays = _arrays(args.data, size, args.examples)
        for arch in args.archs:
            cs, loop = contenders(arch, size, batch, arrays, mesh, args.augment)
            all_contenders += cs
            loops.append((cs[0].group, arrays, loop))
    for c in all_contenders:
        c.warmup()
    for r in range(rounds):
        for c in all_contenders:
            c.time_round(args.reps)
        if deadline is not None and time.monotonic() > deadline and r + 1 < rounds:
            print(f"time budget reached: {r + 1} of {rounds} rounds")
            break
    waits = {}
    for group, arrays, (state, step, put) in loops:
        waits[group] = data_wait(arrays, batch, state, step, put, loop_steps)

    rows, results = [], []
    for c in all_contenders:
        s = c.summary()
        results.append(s)
        rows.append([c.group, c.name, harness.fmt_rate(s)])
    for group, (rate, wait) in waits.items():
        rows.append([group, f"loop ({loop_steps} steps)", f"{rate:.0f}, waiting {wait:.1%}"])
        results.append({"group": group, "name": "loop", "images_per_s": rate, "data_wait": wait})
    print()
    harness.print_table(["config", "stage", "images/s median (min-max)"], rows)
    harness.write_json(
        args.json,
        {
            "benchmark": "input_pipeline",
            "argv": sys.argv[1:],
            "machine": harness.machine(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
