"""Where a train step's time goes, per op, charjax (XLA:CPU) vs PyTorch eager.

The same step as train_step.py (forward in train mode, cross-entropy, backward, AdamW on a
fixed batch), profiled over a few steps after warm-up:
- charjax: `jax.profiler` trace of the jitted step; each XLA op (thunk) in the trace is
  matched to its instruction in the optimized HLO (dumped by XLA in the same process) and
  put into a category by what it is (convolution, its two gradients, the layout copies
  XLA:CPU inserts in front of the kernel gradient, GEMV/GEMM, elementwise fusions) and by
  whether autodiff made it (backward) or not;
- torch: `torch.profiler`, self CPU time of each aten op, grouped the same way.
Each side runs in its own process, one after the other (torch's OpenMP threads and XLA's
should not share a process). Times are per step, in ms; the shares are of the summed op
time, which on XLA can exceed the wall time when independent ops run side by side. XLA:CPU's
trace times a convolution's launch, not its work (Eigen runs it asynchronously), so when the
ops add up to less than the wall time the rest is listed as "not in the trace" and the
shares are of the wall time.

    .venv/bin/python benchmarks/step_breakdown.py                  # resnet-small, 32 px, b128
    .venv/bin/python benchmarks/step_breakdown.py --arch cnn-small --top 20
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (category, forward or backward or optimizer) -> ms per step
Breakdown = dict[tuple[str, str], float]


def _hlo_instructions(dump_dir: str) -> dict[str, dict]:
    """name -> {"opcode", "shape", "op_name", "text"} of the entry computation of jit_step."""
    [path] = glob.glob(os.path.join(dump_dir, "*jit_step.cpu_after_optimizations.txt"))
    out, entry = {}, False
    line_re = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+) (\w[\w-]*)\(")
    for line in Path(path).read_text().splitlines():
        entry = entry or line.startswith("ENTRY")
        m = line_re.match(line)
        if entry and m:
            op_name = re.search(r'op_name="([^"]*)"', line)
            out[m.group(1)] = {
                "opcode": m.group(3),
                "shape": m.group(2),
                "op_name": op_name.group(1) if op_name else "",
                "text": line,
            }
    return out


def _jax_category(name: str, inst: dict, batch: int) -> tuple[str, str]:
    op_name, opcode = inst["op_name"], inst["opcode"]
    if "transpose(jvp" in op_name:
        phase = "backward"
    elif "jvp(" in op_name:
        phase = "forward"
    elif op_name:
        phase = "optimizer"
    else:  # XLA-made: layout copies and rewritten convolutions only occur in the backward pass
        made = name.startswith(("transpose", "copy", "convolution"))
        phase = "backward" if made else "other"
    if opcode == "convolution":
        if phase == "forward":
            return "conv", phase
        # Autodiff's input gradient is batch-major like the input; the kernel gradient is
        # kernel-shaped.
        batch_major = re.match(rf"f32\[{batch},", inst["shape"]) is not None
        return ("conv input grad" if batch_major else "conv kernel grad"), phase
    if name.startswith(("transpose", "copy", "wrapped_copy", "wrapped_transpose")):
        return "layout copy (transpose)", phase
    if opcode == "dot" or name.startswith("dot"):
        return "dot (GEMV stats, 1x1 conv, dense)", phase
    if "reduce-window" in name or "select-and-scatter" in name or "reduce_max" in op_name:
        return "max pool", phase
    if "reduce" in name:
        return "reduction", phase
    return "elementwise fusion", phase


def jax_breakdown(arch: str, size: int, batch: int, steps: int) -> tuple[Breakdown, list, float]:
    """Per-category ms per step of charjax's step, the top ops, and the step's wall ms."""
    dump = tempfile.mkdtemp(prefix="charjax-hlo-")
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump} --xla_dump_hlo_as_text"
        " --xla_dump_hlo_module_re=jit_step"
    )
    import jax
    import train_step

    import charjax  # noqa: F401  (its XLA defaults, before the backend starts)

    run = train_step.jax_model_step(arch, size, batch, fast=True)
    run(3)
    t = time.perf_counter()
    run(steps)
    wall_ms = (time.perf_counter() - t) / steps * 1e3
    trace_dir = tempfile.mkdtemp(prefix="charjax-trace-")
    jax.profiler.start_trace(trace_dir)
    run(steps)
    jax.profiler.stop_trace()
    insts = _hlo_instructions(dump)
    [trace] = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(trace) as f:
        events = json.load(f)["traceEvents"]
    for d in (dump, trace_dir):  # the worker's own scratch (the HLO dump is ~100 files)
        shutil.rmtree(d, ignore_errors=True)
    per_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") == "X" and e["name"] in insts:
            per_op[e["name"]] += e["dur"] / 1e3 / steps
    cats: Breakdown = collections.defaultdict(float)
    top = []
    for name, ms in per_op.items():
        key = _jax_category(name, insts[name], batch)
        cats[key] += ms
        layer = re.sub(r"^jit\(step\)/(transpose\()?(jvp\()?(ResNet|CNN)?\)?\)?/?", "",
                       insts[name]["op_name"])  # fmt: skip
        top.append((ms, name, key[0], key[1], layer))
    return dict(cats), sorted(top, reverse=True), wall_ms


_TORCH_CATEGORIES = [  # (regex on the aten op name, category); first match wins
    (r"convolution_backward", "conv input + kernel grad"),
    (r"conv|mkldnn_convolution", "conv"),
    (r"batch_norm", "batch norm"),
    (r"max_pool", "max pool"),
    (r"threshold_backward|relu|clamp_min", "relu"),
    (r"addmm|mm$|linear", "dense"),
    (r"log_softmax|nll_loss|cross_entropy", "loss"),
    (r"copy_|contiguous|clone|empty|zero|fill", "copies and allocation"),
    (r"add|mul|div|mean|sum", "elementwise"),
]


def _torch_phase(event) -> str:
    """optimizer, backward or forward: from the op's callers (AdamW's step is one annotated
    range; autograd's engine runs each backward function under its own)."""
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    if any(n.startswith("Optimizer.step") for n in names):
        return "optimizer"
    if any("backward" in n.lower() or n.startswith("autograd::engine") for n in names):
        return "backward"
    return "forward"


def torch_breakdown(arch: str, size: int, batch: int, steps: int) -> tuple[Breakdown, list, float]:
    """The same for torch eager (channels_last), from torch.profiler's self CPU time of each
    aten op, its phase from its callers."""
    import torch
    import train_step
    from torch.profiler import ProfilerActivity, profile

    run = train_step.torch_step(arch, size, batch, channels_last=True)
    run(3)
    t = time.perf_counter()
    run(steps)
    wall_ms = (time.perf_counter() - t) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    cats: Breakdown = collections.defaultdict(float)
    per_op: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for ev in prof.events():
        if not ev.name.startswith("aten::"):
            continue
        ms = ev.self_cpu_time_total / 1e3 / steps
        cat = next((c for pat, c in _TORCH_CATEGORIES if re.search(pat, ev.name)), "other")
        phase = _torch_phase(ev)
        cats[(cat, phase)] += ms
        per_op[(ev.name, cat, phase)] += ms
    top = [(ms, name, cat, phase, "") for (name, cat, phase), ms in per_op.items()]
    del torch
    return dict(cats), sorted(top, reverse=True), wall_ms


def _print(side: str, cats: Breakdown, top: list, wall_ms: float, n_top: int) -> None:
    total = sum(cats.values())
    print(f"\n{side}: {wall_ms:.1f} ms per step wall, {total:.1f} ms summed over ops")
    rows = sorted(cats.items(), key=lambda kv: -kv[1])
    if wall_ms > total:
        # XLA:CPU runs convolutions (and large GEMMs) on Eigen's thread pool and returns
        # before they finish, so its trace times their launch only: the wall time the trace
        # does not account for is their work.
        rows.append((("not in the trace (async convs, GEMMs)", "-"), wall_ms - total))
        total = wall_ms
    print(f"  {'category':38s} {'phase':9s} {'ms/step':>8s} {'share':>6s}")
    for (cat, phase), ms in rows:
        print(f"  {cat:38s} {phase:9s} {ms:8.2f} {ms / total:6.1%}")
    print(f"  top {n_top} ops:")
    for ms, name, cat, phase, layer in top[:n_top]:
        print(f"  {ms:8.2f}  {name[:34]:34s} {cat[:26]:26s} {phase:9s} {layer[:40]}")


def worker(side: str, args) -> None:
    f = jax_breakdown if side == "jax" else torch_breakdown
    cats, top, wall_ms = f(args.arch, args.size, args.batch, args.steps)
    payload = {
        "side": side,
        "wall_ms": wall_ms,
        "categories": [[c, p, ms] for (c, p), ms in cats.items()],
        "top": top[: args.top],
    }
    sys.stdout.write("@@" + json.dumps(payload) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet-small")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="profiled steps per side")
    p.add_argument("--top", type=int, default=12, help="how many single ops to list")
    p.add_argument("--sides", nargs="+", default=["jax", "torch"])
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args)
    results = []
    for side in args.sides:
        script = str(Path(__file__).resolve())
        cmd = [sys.executable, script, "--worker", side, *(argv or sys.argv[1:])]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=True)
        [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
        r = json.loads(line[2:])
        results.append(r)
        cats = {(c, ph): ms for c, ph, ms in r["categories"]}
        _print("charjax (XLA:CPU)" if side == "jax" else "torch channels_last", cats, r["top"],
               r["wall_ms"], args.top)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "results": results}, indent=1))


if __name__ == "__main__":
    main()
