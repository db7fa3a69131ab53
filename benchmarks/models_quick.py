"""Train-step throughput of each registered model (and resnet candidates) on this machine.

A full step: forward, backward, optax adamw update; jitted with the state donated, warmed up
first (so compile time is reported apart), timed with block_until_ready. Configurations are
interleaved round by round, so load from other processes hits them all alike; the table shows
the median round and the best (least disturbed) one.

    .venv/bin/python benchmarks/models_quick.py [--batch 128] [--sizes 32 64] [--rounds 5]
"""

import argparse
import json
import statistics
import time
from functools import partial

import jax
import optax

from charjax.models import get_model, model_names
from charjax.models.info import count_params, forward_flops
from charjax.models.resnet import ResNet

# The alternatives resnet-small was chosen against (see the ResNet docstring for why).
CANDIDATES = {
    "resnet 24/48/96": partial(ResNet, stage_sizes=(1, 1, 1), widths=(24, 48, 96)),
    "resnet 16/32/64": partial(ResNet, stage_sizes=(1, 1, 1), widths=(16, 32, 64)),
    "resnet 32/64/128 x2": partial(ResNet, stage_sizes=(2, 2, 2), widths=(32, 64, 128)),
    # The textbook small ResNet: first stage at 32x32 (its stem is stride 1 at 32 px).
    "resnet 32/64/128 x2 full-res": partial(
        ResNet, stage_sizes=(2, 2, 2), widths=(32, 64, 128), first_stage_size=32
    ),
}


def make_step(model, tx):
    def loss_fn(params, batch_stats, x, y, rng):
        variables = {"params": params}
        if batch_stats is not None:
            variables["batch_stats"] = batch_stats
            logits, updates = model.apply(
                variables, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
            )
            batch_stats = updates["batch_stats"]
        else:
            logits = model.apply(variables, x, train=True, rngs={"dropout": rng})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, batch_stats

    @partial(jax.jit, donate_argnums=(0,))
    def step(state, x, y, rng):
        params, batch_stats, opt_state = state
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, x, y, rng
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    return step


class Bench:
    def __init__(self, name, model, size, batch):
        self.name, self.size = name, size
        key = jax.random.key(0)
        x = jax.random.uniform(key, (batch, size, size, 1))
        self.x, self.y = x, jax.random.randint(key, (batch,), 0, 62)
        variables = model.init({"params": key, "dropout": key}, x[:1], train=False)
        tx = optax.adamw(1e-3)
        params = variables["params"]
        self.state = (params, variables.get("batch_stats"), tx.init(params))
        self.step = make_step(model, tx)
        self.rng = key
        self.mflops = forward_flops(model, size) / 1e6
        self.params = count_params(model, size)
        t = time.perf_counter()
        self.run(1)
        self.compile_s = time.perf_counter() - t
        self.run(2)
        self.rates = []

    def run(self, steps):
        for _ in range(steps):
            self.state, loss = self.step(self.state, self.x, self.y, self.rng)
        jax.block_until_ready((self.state, loss))

    def timed(self, steps, batch):
        t = time.perf_counter()
        self.run(steps)
        self.rates.append(steps * batch / (time.perf_counter() - t))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--only", nargs="*", help="names to run (default: all)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    builders = {n: partial(get_model, n) for n in model_names("classifier")} | CANDIDATES
    if args.only:
        builders = {n: b for n, b in builders.items() if n in args.only}
    benches = [Bench(n, b(), s, args.batch) for s in args.sizes for n, b in builders.items()]
    for _ in range(args.rounds):
        for b in benches:
            b.timed(args.steps, args.batch)

    print(
        f"{'model':28} {'px':>3} {'params':>9} {'MFLOP':>7} {'compile s':>9} "
        f"{'img/s median':>12} {'best':>6}"
    )
    rows = []
    for b in benches:
        rate = statistics.median(b.rates)
        print(
            f"{b.name:28} {b.size:3d} {b.params:9,d} {b.mflops:7.1f} {b.compile_s:9.1f} "
            f"{rate:12.0f} {max(b.rates):6.0f}"
        )
        rows.append(
            dict(
                model=b.name,
                image_size=b.size,
                params=b.params,
                mflops=b.mflops,
                compile_s=b.compile_s,
                images_per_s=rate,
                best_images_per_s=max(b.rates),
                rates=b.rates,
            )
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(batch=args.batch, backend=jax.default_backend(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
