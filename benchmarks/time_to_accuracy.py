"""Wall time from `charjax train` start until held-out font accuracy reaches 90% and 95%.

Runs the real command (`charjax train`, the font dataset by default, whose val split is font
families never seen in training) in a fresh process, evaluating every --eval-every steps, and
watches WORKDIR/metrics.jsonl as it is written: each eval record is stamped with the wall time
since the command started (start-up, dataset loading and compilation included). Accuracy is
case-insensitive top-1 ("accuracy_ci": c/C, o/O, s/S... are the same picture once cropped).
Stops the run once every target is reached, or at --max-minutes. `--trainer torch` runs
benchmarks/torch_train.py instead, the PyTorch twin with the same recipe, data and metrics
records, watched the same way. The load average at start and end goes into the JSON (the
machine is shared: say which load a number was measured under).

    .venv/bin/python benchmarks/time_to_accuracy.py              # resnet-small, fonts, 32 px
    .venv/bin/python benchmarks/time_to_accuracy.py --arch cnn-small --image-size 64
    .venv/bin/python benchmarks/time_to_accuracy.py --trainer torch --json torch.json
    .venv/bin/python benchmarks/time_to_accuracy.py --data /path/to/prepared/fonts --json out.json
    .venv/bin/python benchmarks/time_to_accuracy.py --replot a.json b.json --plot curves.png

The dataset is whatever `--data` names; the default `fonts` cache is built from the fonts
installed on the machine (see README "Datasets" for the richer font set), so say which.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness


def _charjax_command() -> list[str]:
    script = Path(sys.executable).with_name("charjax")
    return [str(script)] if script.exists() else [sys.executable, "-m", "charjax.cli.main"]


def _torch_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve().with_name("torch_train.py"))]


def _eval_records(path: Path, seen: int) -> tuple[list[dict], int]:
    """New complete eval records of metrics.jsonl after the first `seen` lines."""
    if not path.exists():
        return [], seen
    lines = path.read_text().splitlines()
    complete = lines if path.read_text().endswith("\n") else lines[:-1]
    records = [json.loads(line) for line in complete[seen:]]
    return [r for r in records if r.get("kind") == "eval"], len(complete)


def run(args) -> dict:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="charjax-tta-"))
    if (workdir / "metrics.jsonl").exists():
        raise SystemExit(f"{workdir} already holds a run; give a new --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    trainer = _charjax_command() + ["train"] if args.trainer == "charjax" else _torch_command()
    command = trainer + [
        "--arch", args.arch,
        "--data", args.data,
        "--image-size", str(args.image_size),
        "--workdir", str(workdir),
        "--eval-every", str(args.eval_every),
        "--seed", str(args.seed),
        # charjax: no checkpoints but at evaluations (torch_train.py saves there too).
        *(["--checkpoint-every", "0", "--no-progress"] if args.trainer == "charjax" else []),
        *args.train_args,
    ]  # fmt: skip
    print(" ".join(command))
    load_start = os.getloadavg()
    start = time.perf_counter()
    log = (workdir / "train.log").open("w")  # the command's own output
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    targets = sorted(args.targets)
    reached: dict[float, dict] = {}
    curve, seen = [], 0
    try:
        while True:
            records, seen = _eval_records(workdir / "metrics.jsonl", seen)
            now = time.perf_counter() - start
            for r in records:
                point = {
                    "step": r["step"],
                    "epoch": r["epoch"],
                    "wall_s": now,  # since the command started; within one poll interval
                    "train_loop_s": r["time"],  # fit's own clock: training loop only
                    "accuracy_ci": r["accuracy_ci"],
                    "accuracy": r["accuracy"],
                }
                curve.append(point)
                print(
                    f"  {now:7.1f} s  step {r['step']:6d}  held-out accuracy "
                    f"{r['accuracy']:.3f}, case-insensitive {r['accuracy_ci']:.3f}"
                )
                for t in targets:
                    if t not in reached and r["accuracy_ci"] >= t:
                        reached[t] = point
            if len(reached) == len(targets) or proc.poll() is not None:
                break
            if now > args.max_minutes * 60:
                print(f"  stopping: --max-minutes {args.max_minutes} reached")
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # charjax saves and exits on the first Ctrl-C
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    log.close()
    if proc.returncode not in (0, -signal.SIGINT, 130) and not curve:
        raise SystemExit(f"{args.trainer} failed (exit code {proc.returncode}); see {log.name}")
    config = json.loads((workdir / "config.json").read_text())
    return {
        "benchmark": "time_to_accuracy",
        "train_args": args.train_args,  # the options after --, beyond the shared recipe
        "trainer": args.trainer,
        "command": command,
        "load_average": {"start": load_start, "end": os.getloadavg()},  # 1, 5, 15 min
        "data": config.get("data"),
        "targets": {f"{t:.2f}": reached.get(t) for t in targets},
        "curve": curve,
        "workdir": str(workdir),
    }


def plot(results: list[dict], out: str) -> None:
    """Held-out accuracy against wall time, one curve per run, the targets as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    for result in results:
        curve = result["curve"]
        arch = result["command"][result["command"].index("--arch") + 1]
        minutes = [p["wall_s"] / 60 for p in curve]
        label = f"{arch}, {result.get('trainer', 'charjax')}"  # older results: charjax only
        label += "".join(f" {a}" for a in result.get("train_args", []))  # e.g. --ema 0.999
        ax.plot(minutes, [100 * p["accuracy_ci"] for p in curve], marker=".", label=label)
    for t in results[0]["targets"]:
        ax.axhline(100 * float(t), color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("wall time since the training command started (min)")
    ax.set_ylabel("held-out fonts, top-1 case-insensitive (%)")
    ax.set_xlim(left=0)  # the start-up and compile time before the first point shows
    lowest = min((100 * p["accuracy_ci"] for r in results for p in r["curve"]), default=50)
    ax.set_ylim(min(50, 10 * math.floor(lowest / 10)), 100)  # every point shows
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = f"{out}.tmp.png"  # never leave a half-written picture under the real name
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    print(f"wrote {out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainer", choices=("charjax", "torch"), default="charjax")
    p.add_argument("--arch", default="resnet-small")
    p.add_argument("--data", default="fonts")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--targets", type=float, nargs="+", default=[0.90, 0.95])
    p.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=30.0)
    p.add_argument("--workdir", help="default: a new temporary directory")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--plot", help="draw accuracy against wall time into this PNG (matplotlib)")
    p.add_argument("--replot", nargs="+", metavar="JSON", help="plot these results; no training")
    p.add_argument(
        "train_args", nargs="*", help="more trainer options, after --, e.g. -- --lr 1e-3"
    )
    args = p.parse_args(argv)
    if args.replot:
        if not args.plot:
            p.error("--replot needs --plot OUT.png")
        return plot([json.loads(Path(f).read_text()) for f in args.replot], args.plot)
    env_note = os.environ.get("XLA_FLAGS", "")
    result = run(args)
    print()
    rows = []
    for t, point in result["targets"].items():
        if point is None:
            rows.append([t, "not reached", "", "", ""])
        else:
            rows.append(
                [t, f"{point['wall_s']:.0f}", f"{point['train_loop_s']:.0f}", point["step"],
                 f"{point['epoch']:.1f}"]
            )  # fmt: skip
    harness.print_table(
        ["case-insensitive target", "wall s (from start)", "train loop s", "step", "epoch"], rows
    )
    data = result["data"] or {}
    print(f"data: {data.get('path')} ({data.get('counts')})")
    print(f"load average (1, 5, 15 min): start {result['load_average']['start']}, "
          f"end {result['load_average']['end']}")  # fmt: skip
    result["xla_flags_env"] = env_note
    harness.write_json(args.json, result)
    if args.plot:
        plot([result], args.plot)


if __name__ == "__main__":
    main()
