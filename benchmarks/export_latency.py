"""Predict latency at batch 1 and 64: onnxruntime on `charjax export`'s file vs charjax.

The same model (the bundled one unless --checkpoint names a run) on the same uint8 batch of
preprocessed-size images, probabilities back in numpy on both sides:
- charjax: `Predictor.probabilities`, the path `charjax predict` and the GUI use (padded to a
  batch bucket, jitted forward + softmax);
- onnxruntime: `InferenceSession.run` on the exported graph (CPU provider, default threads).

Each side runs in its own process (XLA's and onnxruntime's thread pools would otherwise share
the 2 cores), timed in interleaved rounds by harness.py.

    .venv/bin/python benchmarks/export_latency.py
    .venv/bin/python benchmarks/export_latency.py --quick --json out.json
"""

import argparse
import tempfile
from pathlib import Path

import harness
import numpy as np
from harness import Contender

from charjax.export import ExportConfig, export_onnx
from charjax.predict import Predictor, default_checkpoint

SIDES = ("charjax", "onnxruntime")


def _images(batch, size):
    return np.random.default_rng(0).integers(0, 256, (batch, size, size), dtype=np.uint8)


def charjax_predict(checkpoint, batch):
    predictor = Predictor.load(checkpoint)
    images = _images(batch, predictor.spec.size)

    def run(n):
        for _ in range(n):
            predictor.probabilities(images)  # returns numpy: already waited for

    return run


def onnxruntime_predict(onnx_path, size, batch):
    import onnxruntime as ort  # lazy: the optional export extra; only this worker needs it

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    images = _images(batch, size)

    def run(n):
        for _ in range(n):
            session.run(["probabilities"], {"images": images})

    return run


def build(spec: dict) -> list[Contender]:
    out = []
    for batch in spec["batches"]:
        group = f"{spec['arch']} {spec['size']}px batch {batch}"
        if spec["side"] == "charjax":
            run = charjax_predict(spec["checkpoint"], batch)
        else:
            run = onnxruntime_predict(spec["onnx"], spec["size"], batch)
        out.append(Contender(spec["side"], group, run, batch))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="pretrained", help="a run, or 'pretrained'")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--reps", type=int, default=None, help="calls per round (default: scaled)")
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return harness.worker_main(build, args.worker)

    checkpoint = str(default_checkpoint() if args.checkpoint == "pretrained" else args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(ExportConfig(checkpoint, Path(tmp) / "model.onnx"))
        common = {
            "checkpoint": checkpoint,
            "onnx": str(exported.model_path),
            "arch": exported.arch,
            "size": exported.input_shape[-1],
            "batches": args.batches,
        }
        script = Path(__file__).resolve()
        workers = [harness.Worker(script, {**common, "side": s}, label=s) for s in SIDES]
        rounds = 3 if args.quick else args.rounds
        contenders = harness.run_workers(workers, rounds, args.reps or (20 if args.quick else 50))

    harness.report_latency(
        "export_latency", contenders, workers, "charjax", args.json, "vs charjax"
    )


if __name__ == "__main__":
    main()
