"""The accelerator benchmark: train step, predict latency and input pipeline in one call, within
a wall-clock budget, into one JSON.

Written for a machine lent for a few minutes, whose python has jax (CUDA), flax, optax,
orbax-checkpoint, torch, pillow, click, requests and tqdm and nothing else, and where charjax
runs from this copy of the repository (no install step):

    PYTHONPATH=. python3 benchmarks/gpu.py --json gpu.json         # `make bench-gpu`
    PYTHONPATH=. python3 benchmarks/gpu.py --smoke --json /tmp/smoke.json   # CPU, 80 s budget

Tables: train step (charjax float32 and bfloat16; torch float32 and bfloat16 autocast, NCHW
and channels_last; batch 256 and 1024 on an accelerator), images/s median (min-max) and charjax
over the fastest torch layout at the same dtype; predict latency (batch 1, 64, 1024); input
pipeline stages and the data wait of a running loop.

Each section is one of the existing scripts (train_step.py, predict_latency.py,
input_pipeline.py) in its own process group, given a share of the time left: it stops timing
rounds at `TIMING_SHARE` of its share (after one round at least) and is killed at the end of
it. A section that fails, is killed or finds too little time left is recorded with the reason,
and the others still run. The JSON is rewritten atomically after every section, so a run cut
short keeps what it measured. A short-lived first process reports the devices and versions;
the parent never starts a JAX backend itself, so it holds no accelerator memory.
"""

import argparse
import collections
import contextlib
import datetime
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import harness

from charjax.atomic import write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMING_SHARE = 0.6  # the rest of a section's share: process start, compiles, its report
PROBE_TIMEOUT_S = 90
SECTIONS = ("train_step", "predict_latency", "input_pipeline")


@dataclass(frozen=True)
class Section:
    """One benchmark script run as a section: its flags, and its weight in the budget."""

    name: str
    weight: float
    argv: tuple[str, ...]
    takes_no_torch: bool = True


@dataclass(frozen=True)
class Scale:
    """How big the sections run: batch sizes, timing rounds and repetitions per round."""

    train_batches: tuple[int, ...]
    predict_batches: tuple[int, ...]
    rounds: int
    train_reps: int
    predict_reps: int
    pipeline: tuple[str, ...]  # input_pipeline.py's own flags


SCALES = {
    # Batches that keep a GPU busy: at 128, a 32 px step measures dispatch more than compute.
    "accelerator": Scale(
        (256, 1024), (1, 64, 1024), 7, 20, 20,
        ("--batch", "1024", "--rounds", "5", "--reps", "10", "--loop-steps", "50"),
    ),
    # A full run on a CPU works but is cut short by the budget; README has the CPU tables.
    "cpu": Scale(
        (128,), (1, 64), 3, 2, 10,
        ("--batch", "128", "--rounds", "3", "--reps", "3", "--loop-steps", "10"),
    ),
    # The plumbing, on a CPU in about a minute: the test model, no augmentation to compile.
    "smoke": Scale(
        (8,), (1, 4), 2, 1, 2,
        ("--batch", "8", "--examples", "64", "--augment", "0", "--rounds", "1", "--reps", "1",
         "--loop-steps", "2"),
    ),
}  # fmt: skip


def plan(args, accelerator: bool) -> list[Section]:
    """The sections' command lines (those named in --sections) at the machine's scale."""
    scale = SCALES["smoke" if args.smoke else "accelerator" if accelerator else "cpu"]
    archs = ["tiny"] if args.smoke else args.archs
    sizes = [str(s) for s in ([16] if args.smoke else args.sizes)]
    common = ("--archs", *archs, "--sizes", *sizes, "--rounds", str(scale.rounds))
    train = ("--batch", *map(str, scale.train_batches), "--reps", str(scale.train_reps))
    predict = ("--batches", *map(str, scale.predict_batches), "--reps", str(scale.predict_reps))
    both = ("--dtypes", "float32", "bfloat16", "--variants", "charjax", "--no-library")
    # Weights: the train step has the most to compile and two workers (charjax's, torch's).
    sections = [
        Section("train_step", 0.6, (*common, *train, *both)),
        Section("predict_latency", 0.2, (*common, *predict, "--variants", "charjax")),
        Section(
            "input_pipeline",
            0.2,
            ("--archs", *archs, "--sizes", *sizes, *scale.pipeline),
            takes_no_torch=False,
        ),
    ]
    return [s for s in sections if s.name in args.sections]


def probe() -> dict:
    """Devices and versions, as this process sees them (run in a short-lived child)."""
    import jax  # the probe process only: the parent never starts a backend

    info = harness.machine()
    devices = jax.devices()
    info.update(device_kind=devices[0].device_kind, device_count=len(devices))
    for dist in ("flax", "optax", "orbax-checkpoint", "numpy", "jaxlib"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    try:
        import torch  # optional: CI installs charjax without it
    except ImportError:
        info["torch"] = None
        return info
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["torch_device"] = torch.cuda.get_device_name(0)
        info["torch_cuda_version"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _child_env(extra: dict) -> dict:
    env = {**os.environ, **extra}
    # charjax runs from this checkout, not an install; the workers' cwd is ROOT.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # Two processes share the device in a section (charjax's and torch's workers): JAX must
    # not take 75% of its memory up front.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _echo(stream, tail):
    for line in stream:
        sys.stdout.write(line)
        tail.append(line.rstrip("\n"))
    sys.stdout.flush()


def run_process(command: list[str], timeout_s: float, env: dict) -> tuple[int | None, list[str]]:
    """Runs `command` in its own process group, echoing its output; kills the whole group
    (workers included) after `timeout_s`. Returns (exit code or None if killed, last lines)."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    tail = collections.deque(maxlen=30)
    reader = threading.Thread(target=_echo, args=(proc.stdout, tail), daemon=True)
    reader.start()
    code = None
    try:
        code = proc.wait(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        pass
    finally:
        # The group, not just the script: a worker left behind would hold the device.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
    return code, list(tail)


def probe_devices(log) -> tuple[dict, dict]:
    """The probe's report and the environment the sections get. XLA refuses flags it does not
    know, so if charjax's XLA:CPU defaults stop an older jax from starting, the sections run
    without them (they change nothing on an accelerator) and the report says so."""
    command = [sys.executable, str(Path(__file__).resolve()), "--probe"]
    for extra in ({}, {"CHARJAX_XLA_DEFAULTS": "0"}):
        env = _child_env(extra)
        code, tail = run_process(command, PROBE_TIMEOUT_S, env)
        replies = [line[2:] for line in tail if line.startswith("@@")]
        if code == 0 and replies:
            info = json.loads(replies[-1])
            if extra:
                info["note"] = "charjax's XLA:CPU flags were refused; run without them"
            return info, extra
        log(f"device probe failed (exit code {code}) with env {extra or 'as given'}")
    return {"error": "device probe failed", "log_tail": tail}, {}


def run_section(section: Section, budget_s: float, no_torch: bool, env: dict, out_dir: Path):
    """Runs one section with `budget_s` seconds; returns its record for the JSON."""
    path = out_dir / f"{section.name}.json"
    command = [sys.executable, str(HERE / f"{section.name}.py"), *section.argv]
    command += ["--json", str(path), "--budget-s", f"{budget_s * TIMING_SHARE:.0f}"]
    if no_torch and section.takes_no_torch:
        command.append("--no-torch")
    print(f"\n=== {section.name} ({budget_s:.0f} s): {' '.join(command[1:])}", flush=True)
    t = time.monotonic()
    code, tail = run_process(command, budget_s, env)
    record = {"budget_s": round(budget_s, 1), "seconds": round(time.monotonic() - t, 1)}
    record["command"] = command[1:]
    if code is None:
        record.update(status="timeout", reason=f"killed after its share of {budget_s:.0f} s")
    elif code != 0:
        record.update(status="failed", reason=f"exit code {code}")
    elif not path.exists():
        record.update(status="failed", reason="no JSON written")
    else:
        record.update(status="ok", result=json.loads(path.read_text()))
    if record["status"] != "ok":
        record["log_tail"] = tail
    print(f"=== {section.name}: {record['status']} in {record['seconds']:.0f} s", flush=True)
    return record


def tables(sections: dict) -> dict:
    """Compact rows of each section that ran, and charjax over the best torch per config."""
    out = {}
    rate = lambda r: {k: round(r[f"per_s_{k}"], 1) for k in ("median", "min", "max")}
    train = sections.get("train_step", {}).get("result")
    if train:
        rows = train["results"]
        out["train_step_images_per_s"] = [
            {"config": r["group"], "contender": r["name"], "dtype": r.get("dtype"),
             "layout": r.get("layout"), **rate(r), "compile_s": round(r["compile_s"], 2)}
            for r in rows
        ]  # fmt: skip
        out["train_step_charjax_vs_best_torch"] = [
            {"config": r["group"], "dtype": r["dtype"], "charjax": round(r["per_s_median"], 1),
             "best_torch": r["best_torch"], "ratio": round(r["vs_best_torch"], 3)}
            for r in rows
            if r["name"].startswith("charjax") and "vs_best_torch" in r
        ]  # fmt: skip
    predict = sections.get("predict_latency", {}).get("result")
    if predict:
        out["predict_latency_ms"] = [
            {"config": r["group"], "contender": r["name"],
             **{k: round(r[f"{k}_s"] * 1e3, 3) for k in ("median", "min", "max")},
             "first_call_s": round(r["compile_s"], 2)}
            for r in predict["results"]
        ]  # fmt: skip
    pipeline = sections.get("input_pipeline", {}).get("result")
    if pipeline:
        out["input_pipeline_images_per_s"] = [
            {"config": r["group"], "stage": r["name"], **rate(r)}
            if "per_s_median" in r
            else {"config": r["group"], "stage": r["name"],
                  "median": round(r["images_per_s"], 1), "data_wait": round(r["data_wait"], 3)}
            for r in pipeline["results"]
        ]  # fmt: skip
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="where to write (default: runs/bench/gpu-DATE.json)")
    p.add_argument("--budget-s", type=float, help="wall-clock budget (default 450; --smoke 80)")
    p.add_argument("--smoke", action="store_true", help="tiny model and sizes: the plumbing")
    p.add_argument("--no-torch", action="store_true", help="charjax only")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--archs", nargs="+", default=["resnet-small", "cnn-small"])
    p.add_argument("--sizes", type=int, nargs="+", default=[32])
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.probe:
        print("@@" + json.dumps(probe(), default=str), flush=True)
        return
    # SIGTERM (a job's time limit) unwinds like Ctrl-C, so that the running section's process
    # group is killed too (it is a session of its own, out of reach of a kill of ours).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    budget = args.budget_s or (80.0 if args.smoke else 450.0)
    start = time.monotonic()
    deadline = start + budget
    stamp = datetime.datetime.now().astimezone()
    out = Path(args.json or ROOT / "runs" / "bench" / f"gpu-{stamp:%Y%m%d-%H%M%S}.json")
    payload = {
        "benchmark": "gpu",
        "argv": sys.argv[1:] if argv is None else argv,
        "date": stamp.isoformat(timespec="seconds"),
        "budget_s": budget,
        "smoke": args.smoke,
    }
    device, extra_env = probe_devices(print)
    accelerator = device.get("backend", "cpu") != "cpu"
    no_torch = args.no_torch or device.get("torch", 0) is None
    payload.update(device=device, accelerator=accelerator, torch_compared=not no_torch)
    env = _child_env(extra_env)
    payload["section_env"] = {k: env[k] for k in ("XLA_PYTHON_CLIENT_PREALLOCATE",)}
    sections = plan(args, accelerator)
    records = {name: {"status": "skipped", "reason": "not in --sections"} for name in SECTIONS}
    save(out, payload, records, time.monotonic() - start)  # the device, should a section hang
    min_s = 5.0 if args.smoke else 30.0
    with tempfile.TemporaryDirectory(prefix="charjax-gpu-") as tmp:
        for i, section in enumerate(sections):
            left = deadline - time.monotonic()
            share = left * section.weight / sum(s.weight for s in sections[i:])
            if share < min_s:
                reason = f"{max(left, 0):.0f} s of the budget left, {share:.0f} s for this section"
                records[section.name] = {"status": "skipped", "reason": reason}
            else:
                try:
                    records[section.name] = run_section(section, share, no_torch, env, Path(tmp))
                except Exception as e:  # one section's bug must not lose the others' numbers
                    records[section.name] = {"status": "failed", "reason": repr(e)}
            save(out, payload, records, time.monotonic() - start)
    summary(payload, out)


def save(out: Path, payload: dict, records: dict, seconds: float) -> None:
    """Writes the JSON as it stands (atomically: a reader never sees half a file)."""
    payload.update(sections=records, seconds=round(seconds, 1))
    try:
        payload["tables"] = tables(records)
    except (KeyError, TypeError) as e:  # a section's JSON in a shape not foreseen: keep it raw
        payload["tables"] = {"error": repr(e)}
    write_json_atomic(out, payload)


def summary(payload: dict, out: Path) -> None:
    print(f"\n{payload['device'].get('devices', '?')}; {payload['seconds']:.0f} s")
    for name, record in payload["sections"].items():
        reason = f" ({record['reason']})" if "reason" in record else ""
        print(f"  {name}: {record['status']}{reason}")
    rows = payload["tables"].get("train_step_charjax_vs_best_torch", [])
    if rows:
        print()
        harness.print_table(
            ["config", "dtype", "charjax images/s", "best torch", "charjax / torch"],
            [[r["config"], r["dtype"], f"{r['charjax']:.0f}", r["best_torch"], f"{r['ratio']:.2f}x"]
             for r in rows],
        )  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
