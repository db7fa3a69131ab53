"""Runs the benchmark suite, each script in its own process, and collects their JSON.

    .venv/bin/python benchmarks/run_all.py --quick     # `make bench`: a few minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py             # the full suite (README "Performance")
    .venv/bin/python benchmarks/run_all.py --only train_step predict_latency

Results go to --out (default runs/bench/DATE/), one JSON per benchmark. time_to_accuracy
trains a model for minutes and is left out unless named with --only (or --with-tta).
PyTorch comparisons need the `bench` extra (`pip install -e '.[bench]'`); without torch the
scripts run charjax alone.
"""

import argparse
import datetime
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "train_step": ["--quick"],
    "predict_latency": ["--quick"],
    "export_latency": ["--quick"],
    "input_pipeline": ["--quick", "--sizes", "32"],
    "layers": ["--rounds", "3", "--reps", "3", "--sizes", "32"],
    "conv_parts": ["--rounds", "3", "--reps", "3"],
    "time_to_accuracy": ["--max-minutes", "10"],
}
DEFAULT = [name for name in QUICK if name != "time_to_accuracy"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short versions of every benchmark")
    p.add_argument("--only", nargs="+", choices=list(QUICK), help="these benchmarks only")
    p.add_argument("--with-tta", action="store_true", help="also run time_to_accuracy")
    p.add_argument("--out", help="output directory (default: runs/bench/DATE)")
    args = p.parse_args(argv)
    names = args.only or DEFAULT + (["time_to_accuracy"] if args.with_tta else [])
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or HERE.parent / "runs" / "bench" / stamp)
    out.mkdir(parents=True, exist_ok=True)
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch:
        print("torch is not installed (pip install -e '.[bench]'): charjax numbers only")
    failed = []
    for name in names:
        command = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out / f"{name}.json")]
        if args.quick:
            command += QUICK[name]
        if not has_torch and name in ("train_step", "predict_latency"):
            command.append("--no-torch")
        if name == "export_latency" and importlib.util.find_spec("onnxruntime") is None:
            print(
                "\n=== export_latency: skipped, needs the export extra (pip install -e '.[export]')"
            )
            continue
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        t = time.perf_counter()
        if subprocess.call(command) != 0:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - t:.0f} s", flush=True)
    print(f"\nresults in {out}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
