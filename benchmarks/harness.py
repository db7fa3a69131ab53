"""What the benchmarks share: warmup, interleaved timing rounds across processes, tables, JSON.

Timing protocol (the machine these numbers come from is shared and noisy):
- every contender is warmed up first, so that we are not measuring just compilation; the
  first call's time is reported apart as compile time;
- contenders then run in interleaved rounds (A, B, C, A, B, C, ...), so a burst of load from
  another process hits them all alike; tables show the median round with the min-max range,
  and comparisons are ratios of medians from the same run.

Contenders that need their own process -- another XLA_FLAGS setting, another device count,
or PyTorch, whose OpenMP threads should not share a process with XLA's -- live in worker
processes (`Worker`). Only one process runs at a time: the parent asks each worker in turn to
time one round of its contenders, so the interleaving covers them too.

A benchmark script defines `build(spec) -> list[Contender]` and calls `worker_main(build)`
when started with `--worker SPEC`; see train_step.py.
"""

import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from charjax.atomic import write_text_atomic
from charjax.backend import CPU_FLAGS

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Contender:
    """Something to time: `run(n)` does n repetitions and returns when their results are ready.

    Attributes:
      name: its label in tables (e.g. "charjax", "torch").
      group: contenders with the same group are compared with each other (e.g. "resnet-small
        32px b128"); ratios are taken within a group.
      items: items (e.g. images) per repetition, for the throughput column.
      info: extra fields for the JSON (parameter counts, settings, ...).
    """

    name: str
    group: str
    run: Callable[[int], None] | None = None
    items: int = 1
    info: dict = field(default_factory=dict)
    compile_s: float = float("nan")
    seconds: list[float] = field(default_factory=list)  # per repetition, one entry per round

    def warmup(self, reps: int = 2) -> None:
        t = time.perf_counter()
        self.run(1)
        self.compile_s = time.perf_counter() - t
        self.run(reps)  # steady state: caches, allocator, thread pools

    def time_round(self, reps: int) -> float:
        t = time.perf_counter()
        self.run(reps)
        seconds = (time.perf_counter() - t) / reps
        self.seconds.append(seconds)
        return seconds

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.name)

    def summary(self) -> dict:
        s = sorted(self.seconds)
        return {
            "group": self.group,
            "name": self.name,
            "items": self.items,
            "compile_s": self.compile_s,
            "median_s": statistics.median(s),
            "min_s": s[0],
            "max_s": s[-1],
            "per_s_median": self.items / statistics.median(s),
            "per_s_min": self.items / s[-1],
            "per_s_max": self.items / s[0],
            "rounds_s": self.seconds,
            **self.info,
        }


def _send(proc, message: dict) -> dict:
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker died (exit code {proc.wait()})")
        if line.startswith("@@"):  # a reply; anything else is the worker's own output
            return json.loads(line[2:])
        sys.stderr.write(line)


class Worker:
    """A process that builds contenders from a spec, warms them up and times rounds on request.

    Args:
      script: the benchmark script; it is run as `python script --worker SPEC`.
      spec: JSON-able description of the contenders, passed to the script's `build`.
      env: environment overrides (e.g. XLA_FLAGS); None values remove a variable.
    """

    def __init__(self, script, spec: dict, env: dict | None = None, label: str = ""):
        self.label = label
        environ = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v
        if environ.get("CHARJAX_XLA_DEFAULTS") == "0":
            # This process imported charjax, which put its defaults into XLA_FLAGS; a worker
            # measuring XLA's own defaults must not inherit them.
            ours = {f"{name}={value}" for name, value in CPU_FLAGS.items()}
            flags = [f for f in environ.get("XLA_FLAGS", "").split() if f not in ours]
            environ["XLA_FLAGS"] = " ".join(flags)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
            cwd=ROOT,
        )
        self.contenders: list[Contender] = []
        self.machine: dict = {}

    def warmup(self) -> None:
        reply = _send(self.proc, {"cmd": "warmup"})
        self.machine = reply["machine"]
        for c in reply["contenders"]:
            self.contenders.append(
                Contender(
                    c["name"],
                    c["group"],
                    items=c["items"],
                    info=c["info"],
                    compile_s=c["compile_s"],
                )
            )

    def time_round(self, reps: int) -> None:
        reply = _send(self.proc, {"cmd": "round", "reps": reps})
        for c, seconds in zip(self.contenders, reply["seconds"], strict=True):
            c.seconds.append(seconds)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, BrokenPipeError):
                _send(self.proc, {"cmd": "quit"})
            self.proc.wait(timeout=30)


def worker_main(build: Callable[[dict], list[Contender]], spec_json: str) -> None:
    """The worker side of `Worker`: answers warmup / round / quit requests on stdin."""
    spec = json.loads(spec_json)
    contenders: list[Contender] = []

    def reply(message):
        sys.stdout.write("@@" + json.dumps(message) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "warmup":
            contenders = build(spec)
            for c in contenders:
                c.warmup()
            reply(
                {
                    "machine": machine(),
                    "contenders": [
                        {
                            "name": c.name,
                            "group": c.group,
                            "items": c.items,
                            "info": c.info,
                            "compile_s": c.compile_s,
                        }
                        for c in contenders
                    ],
                }
            )
        elif request["cmd"] == "round":
            reply({"seconds": [c.time_round(request["reps"]) for c in contenders]})
        else:
            reply({})
            return


def run_workers(
    workers: list[Worker], rounds: int, reps: int, log=print, deadline: float | None = None
) -> list[Contender]:
    """Warms every worker up, then times `rounds` interleaved rounds; returns all contenders.

    `deadline` (a `time.monotonic()` value) ends the timing early, after at least one round,
    so that a run with a wall-clock budget (benchmarks/gpu.py) still reports every contender.
    """
    try:
        for w in workers:
            t = time.perf_counter()
            w.warmup()
            log(f"  {w.label or 'worker'}: ready in {time.perf_counter() - t:.0f} s")
        for r in range(rounds):
            for w in workers:
                w.time_round(reps)
            log(f"  round {r + 1}/{rounds}")
            if deadline is not None and time.monotonic() > deadline and r + 1 < rounds:
                log(f"  time budget reached: {r + 1} of {rounds} rounds")
                break
    finally:
        for w in workers:
            w.close()
    return [c for w in workers for c in w.contenders]


def machine() -> dict:
    """Where the numbers came from: CPU, cores, backend, versions, flags, date, load."""
    import jax  # here, not at the top: the parent process of a run never needs a backend

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    devices = jax.devices()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": f"{len(devices)} x {devices[0].device_kind}",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    # Only a process that runs torch records it: importing torch to ask (seconds) would also
    # start its thread pool in a JAX worker.
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()[0]
    return info


def accelerator() -> bool:
    """True when JAX runs on a GPU or TPU, where benchmarks scale their batches up."""
    import jax  # see machine()

    return jax.default_backend() != "cpu"


def probe_backend() -> str:
    """JAX's default backend ("cpu", "gpu", "tpu"), asked of a short-lived process, so that a
    parent that only orchestrates workers never holds an accelerator (or its memory) itself."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    probe = "import jax; print(jax.default_backend())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 else "cpu"


def torch_device():
    """The torch device matching JAX's backend: CUDA when there is one, else the CPU.

    On CUDA, torch is set up as XLA runs by default: convolution algorithms autotuned for
    the shapes (cudnn.benchmark; XLA autotunes its convolutions) and float32 matmuls in TF32
    (JAX's default precision on recent GPUs; torch's convolutions already use TF32).
    """
    import torch  # benchmarks' torch workers only

    if not torch.cuda.is_available():
        return torch.device("cpu")
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    return torch.device("cuda")


def torch_sync(device) -> None:
    """Waits for torch's queued work (CUDA is asynchronous, like JAX)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fmt_rate(summary: dict, digits: int = 0) -> str:
    """'median (min-max)' of the items-per-second of a contender summary."""
    f = f".{digits}f"
    return f"{summary['per_s_median']:{f}} ({summary['per_s_min']:{f}}-{summary['per_s_max']:{f}})"


def fmt_ms(summary: dict) -> str:
    """'median (min-max)' of the seconds per repetition, in milliseconds."""
    return (
        f"{summary['median_s'] * 1e3:.2f} "
        f"({summary['min_s'] * 1e3:.2f}-{summary['max_s'] * 1e3:.2f})"
    )


def print_table(headers: list[str], rows: list[list]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def write_json(path, payload: dict) -> None:
    if not path:
        return
    # Atomic: benchmarks/gpu.py reads a section's file even when the section was killed.
    write_text_atomic(path, json.dumps(payload, indent=1, default=str))
    print(f"wrote {path}")


def report_latency(benchmark, contenders, workers, baseline: str, json_path, header: str):
    """Prints the per-call latency table of `contenders` (grouped by config) and writes JSON.

    `header` names the last column: each contender's speed as the `baseline` contender's
    median time over its own (nan where a group has no baseline).
    """
    by_group: dict[str, dict[str, dict]] = {}
    for c in contenders:
        by_group.setdefault(c.group, {})[c.name] = c.summary()
    rows = []
    for group, members in by_group.items():
        base = members.get(baseline)
        for name, s in members.items():
            vs = base["median_s"] / s["median_s"] if base else float("nan")
            rows.append([group, name, fmt_ms(s), f"{s['compile_s']:.2f}", f"{vs:.2f}x"])
    print()
    print_table(
        ["config", "contender", "ms per call median (min-max)", "first call s", header], rows
    )
    write_json(
        json_path,
        {
            "benchmark": benchmark,
            "argv": sys.argv[1:],
            "machine": {w.label: w.machine for w in workers},
            "results": [s for m in by_group.values() for s in m.values()],
        },
    )
