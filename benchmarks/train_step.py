"""Train-step throughput, charjax vs PyTorch eager, for the same architectures side by side.

Every contender does the same work per step on a fixed batch: forward in train mode (batch
norm statistics, dropout), softmax cross-entropy, backward, AdamW update. charjax's step is
jitted with the state donated and the batch sharded over all devices, as `charjax.step`
does; torch runs eagerly (its default NCHW layout, and channels_last). "charjax library"
is the library's own `train_step` (with on-device augmentation and metrics) for reference.
With `--dtypes float32 bfloat16` each runs in both: charjax's model computes in bfloat16
(params and optimizer state float32, as `TrainConfig.dtype`), torch under bfloat16 autocast;
"vs best torch" compares contenders of the same dtype.

Each side runs in its own worker process (see harness.py): "charjax" with the library's
defaults, "before" with the plain formulations and XLA's default flags (what charjax did
before the CPU work), and "torch". Rounds are interleaved across the processes.

    .venv/bin/python benchmarks/train_step.py                      # 32 and 64 px, batch 128
    .venv/bin/python benchmarks/train_step.py --quick              # fewer rounds
    .venv/bin/python benchmarks/train_step.py --ablate             # each CPU lever alone
    .venv/bin/python benchmarks/train_step.py --json out.json
    .venv/bin/python benchmarks/train_step.py --dtypes float32 bfloat16 --batch 256 1024
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import harness
import numpy as np
from harness import Contender

from charjax.backend import compute_dtype  # light: imports JAX only when called

HERE = Path(__file__).resolve().parent
ARCHS = ("cnn-small", "resnet-small")

# Process-wide settings a worker can be started with (env), and model options (fast).
# "charjax" is the library as shipped; the others show one lever each (--ablate).
VARIANTS = {
    "before": {"env": {"CHARJAX_XLA_DEFAULTS": "0"}, "fast": False},
    "charjax": {"env": {}, "fast": True},
    "fast layers only": {"env": {"CHARJAX_XLA_DEFAULTS": "0"}, "fast": True},
    "xla flags only": {"env": {}, "fast": False},
    "2 devices": {"env": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, "fast": True},
    # One device per core, each running its ops on one thread, so that the two halves of the
    # batch could run side by side instead of each op splitting itself across both cores.
    "2 devices x 1 thread": {
        "env": {
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
            "--xla_cpu_multi_thread_eigen=false"
        },
        "fast": True,
    },
}
# XLA:CPU flags tried one at a time on resnet-small (README "Tried and rejected"); charjax's own
# defaults still apply, except the one flag a variant sets.
_ABLATION_FLAGS = {
    "ynn convs": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
    "ynn dots": "--xla_cpu_experimental_ynn_fusion_type=individual_dot",
    "ynn reduce": "--xla_cpu_experimental_ynn_fusion_type=reduce",
    "xnn convs": "--xla_cpu_experimental_xnn_fusion_type=individual_convolution",
    "xnn graph": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "memory scheduler": "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "fast-runtime preset": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    # Each op on one thread, so that XLA's executor can only win by running ops side by side.
    "1 thread per op": "--xla_cpu_multi_thread_eigen=false",
}
VARIANTS.update({k: {"env": {"XLA_FLAGS": v}, "fast": True} for k, v in _ABLATION_FLAGS.items()})


def _batch(size, batch, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch, size, size, 1)).astype(np.float32)
    return images, rng.integers(0, 62, batch).astype(np.int32)


def jax_model_step(arch, size, batch, fast, dtype="float32"):
    """charjax: forward + loss + backward + AdamW on a fixed batch, as one jitted program."""
    import jax
    import jax.numpy as jnp
    import optax

    from charjax import parallel
    from charjax.models import get_model

    model = get_model(arch, dtype=compute_dtype(dtype))
    if hasattr(model, "fast"):  # the archs with CPU formulations (not "tiny")
        model = model.clone(fast=fast)
    mesh = parallel.make_mesh()
    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    images, labels = _batch(size, batch)
    x, y = jax.device_put(images, sharded), jax.device_put(labels, sharded)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    with jax.threefry_partitionable(False):  # compiles faster on CPU; same init
        variables = jax.jit(partial(model.init, train=False), out_shardings=repl)(keys, x[:1])
    tx = optax.adamw(1e-3, weight_decay=5e-4)
    state = {
        "params": variables["params"],
        "batch_stats": variables.get("batch_stats", {}),
        "opt": jax.jit(tx.init, out_shardings=repl)(variables["params"]),
    }

    def loss_fn(params, batch_stats, rng):
        v = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
        logits, updates = model.apply(
            v, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates.get("batch_stats", {})

    @partial(jax.jit, donate_argnums=0, out_shardings=(repl, repl))
    def step(state, rng):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["batch_stats"], rng
        )
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "batch_stats": batch_stats, "opt": opt}, loss

    box = [state]
    rng = jax.device_put(jax.random.key(2), repl)

    def run(n):
        for _ in range(n):
            box[0], loss = step(box[0], rng)
        jnp.asarray(loss).block_until_ready()

    return run


def jax_library_step(arch, size, batch, **overrides):
    """charjax.step's own jitted train_step (augmentation on device, metrics), as fit runs it."""
    import jax

    from charjax import parallel
    from charjax.config import TrainConfig
    from charjax.models import build_model
    from charjax.step import create_train_state, jit_train_step, make_optimizer, make_schedule

    config = TrainConfig(arch=arch, image_size=size, batch_size=batch, **overrides)
    mesh = parallel.make_mesh()
    schedule = make_schedule(config, 10_000)
    state = create_train_state(build_model(config), config, make_optimizer(config, schedule), mesh)
    step = jit_train_step(config, schedule, mesh)
    images, labels = _batch(size, batch)
    host = {
        "image": (images[..., 0] * 255).astype(np.uint8),
        "label": labels,
        "mask": np.ones(batch, bool),
    }
    device_batch = parallel.put_batch(host, mesh)
    box = [state]

    def run(n):
        for _ in range(n):
            box[0], metrics = step(box[0], device_batch)
        jax.block_until_ready(metrics)

    return run


def torch_step(arch, size, batch, channels_last, dtype="float32"):
    """PyTorch eager: the same architecture, loss and optimizer (see torch_models.py);
    dtype "bfloat16" runs forward and loss under autocast, torch's mixed precision."""
    import torch
    import torch_models

    device = harness.torch_device()
    model = torch_models.build(arch, size).train().to(device)
    images, labels = _batch(size, batch)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    # Weight decay on kernels only, as charjax's optimizer.
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}], lr=1e-3
    )

    autocast = torch.autocast(device.type, torch.bfloat16, enabled=dtype == "bfloat16")

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        harness.torch_sync(device)

    return run


def group_name(arch, size, batch):
    return f"{arch} {size}px b{batch}"


def build(spec: dict) -> list[Contender]:
    """The contenders of one worker (see harness.Worker)."""
    out = []
    for arch, size, batch in spec["configs"]:
        group = group_name(arch, size, batch)
        if spec["side"] == "torch":
            out += _torch_contenders(arch, size, batch, spec.get("dtypes", ["float32"]))
            continue
        name = spec["variant"]
        fast = VARIANTS[name]["fast"]
        for dtype in spec.get("dtypes", ["float32"]):
            run = jax_model_step(arch, size, batch, fast, dtype)
            info = {"dtype": dtype, "layout": "NHWC"}
            out.append(Contender(_dtype_name(name, dtype), group, run, batch, info))
        if spec.get("library") and name == "charjax":
            run = jax_library_step(arch, size, batch)  # dtype "auto", as `charjax train`
            info = {"dtype": str(compute_dtype("auto")), "layout": "NHWC"}
            out.append(Contender("charjax library", group, run, batch, info))
    return out


def _dtype_name(name, dtype):  # float32 keeps the plain names of the CPU tables
    return name if dtype == "float32" else f"{name} {dtype}"


def _torch_contenders(arch, size, batch, dtypes):
    import torch_models  # the torch worker only

    # A comparison is only meaningful if the twin is the same function.
    torch_models.check_same_function(arch, size)
    group = group_name(arch, size, batch)
    out = []
    for dtype in dtypes:
        for channels_last, name in ((False, "torch"), (True, "torch channels_last")):
            run = torch_step(arch, size, batch, channels_last, dtype)
            info = {"dtype": dtype, "layout": "NHWC" if channels_last else "NCHW"}
            out.append(Contender(_dtype_name(name, dtype), group, run, batch, info))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, nargs="+", default=None, help="default: 128 (CPU)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--reps", type=int, default=None, help="steps per round (default: scaled)")
    p.add_argument("--quick", action="store_true", help="3 rounds, fewer steps")
    p.add_argument("--ablate", action="store_true", help="also run each CPU lever alone")
    p.add_argument(
        "--variants", nargs="+", help="the charjax workers to run (default: before, charjax)"
    )
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-library", action="store_true", help="skip charjax's own train_step")
    p.add_argument(
        "--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
        help="compute dtypes (torch: bfloat16 autocast)",
    )  # fmt: skip
    p.add_argument("--budget-s", type=float, help="stop timing rounds after this many seconds")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return harness.worker_main(build, args.worker)
    deadline = time.monotonic() + args.budget_s if args.budget_s else None

    # On a GPU/TPU, batch 128 of 32 px images measures little but dispatch overhead.
    batches = args.batch
    if not batches:  # asking costs a process that starts JAX: only when it decides something
        backend = harness.probe_backend()
        batches = [128] if backend == "cpu" else [1024]
        print(f"backend: {backend}; batch {batches}")
    rounds = 3 if args.quick else args.rounds
    reps = args.reps or (2 if args.quick else 3)
    configs = [[a, s, b] for b in batches for s in args.sizes for a in args.archs]
    variants = args.variants or ["before", "charjax"] + (
        ["fast layers only", "xla flags only"] if args.ablate else []
    )
    script = Path(__file__).resolve()
    workers = [
        harness.Worker(
            script,
            {
                "side": "jax",
                "variant": v,
                "configs": configs,
                "library": not args.no_library,
                "dtypes": args.dtypes,
            },
            env=VARIANTS[v]["env"],
            label=v,
        )
        for v in variants
    ]
    if not args.no_torch:
        spec = {"side": "torch", "configs": configs, "dtypes": args.dtypes}
        workers.append(harness.Worker(script, spec, label="torch"))
    contenders = harness.run_workers(workers, rounds, reps, deadline=deadline)
    report(contenders, workers, args)


def report(contenders, workers, args):
    rows, results = [], []
    by_group: dict[str, dict[str, dict]] = {}
    for c in contenders:
        s = c.summary()
        by_group.setdefault(c.group, {})[c.name] = s
        results.append(s)

    def times(s, other):  # "" when that contender did not run
        return f"{s['per_s_median'] / other['per_s_median']:.2f}x" if other else ""

    for group, members in by_group.items():
        before = members.get("before")
        for name, s in members.items():
            # The fastest torch layout at the same dtype (bfloat16 is compared with autocast).
            torch_best = max(
                (t for n, t in members.items() if n.startswith("torch")
                 and t.get("dtype") == s.get("dtype")),
                key=lambda t: t["per_s_median"],
                default=None,
            )  # fmt: skip
            if torch_best:
                s["vs_best_torch"] = s["per_s_median"] / torch_best["per_s_median"]
                s["best_torch"] = torch_best["name"]
            rows.append(
                [group, name, f"{s['compile_s']:.1f}", harness.fmt_rate(s), times(s, before),
                 times(s, torch_best)]
            )  # fmt: skip
    print()
    harness.print_table(
        ["config", "contender", "compile s", "images/s median (min-max)", "vs before",
         "vs best torch"], rows
    )  # fmt: skip
    harness.write_json(
        args.json,
        {
            "benchmark": "train_step",
            "argv": sys.argv[1:],
            "machine": {w.label: w.machine for w in workers},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
