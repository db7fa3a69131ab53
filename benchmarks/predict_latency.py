"""Predict latency at batch 1 (the GUI's case) and batch 64, charjax vs PyTorch eager.

charjax goes through `charjax.predict.Predictor.probabilities`, the path `charjax predict`
and the GUI use: uint8 images in, padded to a batch bucket, jitted forward + softmax, numpy
probabilities out. torch does the same work eagerly under `torch.inference_mode()`: uint8 ->
float, forward in eval mode, softmax, numpy. Weights are random (latency does not depend on
them); both sides use identical architectures (torch_models.py).

    .venv/bin/python benchmarks/predict_latency.py     # resnet-small, cnn-small; 32, 64 px
    .venv/bin/python benchmarks/predict_latency.py --quick --json out.json
"""

import argparse
import time
from pathlib import Path

import harness
import numpy as np
from harness import Contender

ARCHS = ("resnet-small", "cnn-small")
VARIANTS = {
    "before": {"env": {"CHARJAX_XLA_DEFAULTS": "0"}, "fast": False},
    "charjax": {"env": {}, "fast": True},
}


def _images(batch, size):
    return np.random.default_rng(0).integers(0, 256, (batch, size, size), dtype=np.uint8)


def charjax_predict(arch, size, batch, fast):
    """`Predictor.probabilities` on a uint8 batch, with freshly initialised variables."""
    import jax

    from charjax.config import TrainConfig
    from charjax.models import get_model
    from charjax.predict import Predictor
    from charjax.preprocess import PreprocessSpec

    model = get_model(arch)
    if hasattr(model, "fast"):  # the archs with CPU formulations (not "tiny")
        model = model.clone(fast=fast)
    x = np.zeros((1, size, size, 1), np.float32)
    with jax.threefry_partitionable(False):
        variables = jax.jit(model.init)({"params": jax.random.key(0)}, x)
    meta = {
        "config": TrainConfig(arch=arch, image_size=size).to_dict(),
        "preprocess": PreprocessSpec(size=size).to_dict(),
    }
    predictor = Predictor(model, variables, meta, source="benchmark")
    images = _images(batch, size)

    def run(n):
        for _ in range(n):
            predictor.probabilities(images)  # returns numpy: already waited for

    return run


def torch_predict(arch, size, batch):
    import torch
    import torch_models

    device = harness.torch_device()
    model = torch_models.build(arch, size).eval().to(device)
    images = _images(batch, size)

    def run(n):
        with torch.inference_mode():
            for _ in range(n):
                x = torch.from_numpy(images).to(device).unsqueeze(1).float() / 255.0
                torch.softmax(model(x), -1).cpu().numpy()  # to the host, as charjax's

    return run


def build(spec: dict) -> list[Contender]:
    out = []
    for arch, size, batch in spec["configs"]:
        group = f"{arch} {size}px batch {batch}"
        if spec["side"] == "torch":
            out.append(Contender("torch", group, torch_predict(arch, size, batch), batch))
        else:
            fast = VARIANTS[spec["variant"]]["fast"]
            run = charjax_predict(arch, size, batch, fast)
            out.append(Contender(spec["variant"], group, run, batch))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--reps", type=int, default=None, help="calls per round (default: scaled)")
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="the charjax workers to run",
    )  # fmt: skip
    p.add_argument("--budget-s", type=float, help="stop timing rounds after this many seconds")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return harness.worker_main(build, args.worker)
    deadline = time.monotonic() + args.budget_s if args.budget_s else None

    rounds = 3 if args.quick else args.rounds
    configs = [[a, s, b] for b in args.batches for s in args.sizes for a in args.archs]
    script = Path(__file__).resolve()
    workers = [
        harness.Worker(
            script, {"side": "jax", "variant": v, "configs": configs}, VARIANTS[v]["env"], v
        )
        for v in args.variants
    ]
    if not args.no_torch:
        workers.append(harness.Worker(script, {"side": "torch", "configs": configs}, label="torch"))
    # Enough calls per round that one round takes ~0.1-0.5 s at batch 1.
    reps = args.reps or (20 if args.quick else 50)
    contenders = harness.run_workers(workers, rounds, reps, deadline=deadline)

    harness.report_latency(
        "predict_latency", contenders, workers, "torch", args.json, "speed vs torch"
    )


if __name__ == "__main__":
    main()
