"""benchmarks/gpu.py, the accelerator benchmark, run for real in --smoke mode on the CPU.

It must run where only jax, flax, optax, orbax-checkpoint, torch, pillow, click, requests and
tqdm are installed. So every process of a run here (the script, its sections, their workers)
starts with a `sitecustomize` that hides the optional extras charjax knows (matplotlib,
tensorboardX, onnx, PySide6, ...) as if they were not installed: a run that needs one fails.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu.py"
SECTIONS = {"train_step", "predict_latency", "input_pipeline"}
# Not on the accelerator machine; pytest and hershey_fonts are this project's dev extras.
ABSENT = ("matplotlib", "tensorboardX", "tensorboard", "onnx", "onnxruntime", "PySide6",
          "shiboken6", "moviepy", "hershey_fonts", "pytest", "_pytest")  # fmt: skip
HAS_TORCH = importlib.util.find_spec("torch") is not None

# Absent as a missing package is: the path finder does not find it, so `import` raises
# ModuleNotFoundError and `importlib.util.find_spec` returns None (torch probes for onnx so).
BLOCKER = """
import importlib.machinery, sys

class _PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            return None
        return super().find_spec(name, path, target)

sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = _PathFinderWithout
"""


def run_gpu(tmp_path, *flags, absent=ABSENT, timeout=400) -> dict:
    """Runs the script with `absent` unimportable in all its processes; returns its JSON."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(absent=set(absent)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = tmp_path / "gpu.json"
    command = [sys.executable, str(SCRIPT), "--smoke", "--json", str(out), *flags]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def check_common(report: dict) -> None:
    assert report["benchmark"] == "gpu" and report["smoke"] is True
    device = report["device"]
    assert device["backend"] == "cpu" and device["device_kind"]
    assert device["jax"] and device["flax"] and device["optax"] and device["date"]
    assert set(report["sections"]) == SECTIONS
    for name, record in report["sections"].items():
        # A section may run out of its share on a loaded machine (then it says so); a
        # failure is a bug.
        assert record["status"] in ("ok", "timeout"), (name, record)
        if record["status"] == "timeout":
            assert "killed after" in record["reason"] and "log_tail" in record
    assert any(r["status"] == "ok" for r in report["sections"].values()), report["sections"]
    tables = report["tables"]
    if report["sections"]["predict_latency"]["status"] == "ok":
        configs = {r["config"] for r in tables["predict_latency_ms"]}
        assert configs == {"tiny 16px batch 1", "tiny 16px batch 4"}
        assert all(r["min"] <= r["median"] <= r["max"] for r in tables["predict_latency_ms"])
    if report["sections"]["input_pipeline"]["status"] == "ok":
        stages = {r["stage"] for r in tables["input_pipeline_images_per_s"]}
        assert stages == {"iterator", "iterator + transfer", "train step", "loop"}


def test_smoke_without_torch(tmp_path):
    # As CI runs it (charjax installed without torch): torch is blocked too.
    report = run_gpu(tmp_path, "--no-torch", "--budget-s", "150", absent=(*ABSENT, "torch"))
    check_common(report)
    assert report["torch_compared"] is False and report["device"]["torch"] is None
    if report["sections"]["train_step"]["status"] == "ok":
        rows = report["tables"]["train_step_images_per_s"]
        assert {(r["contender"], r["dtype"]) for r in rows} == {
            ("charjax", "float32"),
            ("charjax bfloat16", "bfloat16"),
        }
        assert report["tables"]["train_step_charjax_vs_best_torch"] == []


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install -e '.[bench]')")
def test_smoke_with_torch(tmp_path):
    # One section with the whole budget: enough for it on a loaded 2-core machine (~100 s).
    report = run_gpu(tmp_path, "--budget-s", "200", "--sections", "train_step")
    assert report["torch_compared"] is True and report["device"]["torch"]
    assert report["sections"]["train_step"]["status"] == "ok", report["sections"]["train_step"]
    skipped = {"status": "skipped", "reason": "not in --sections"}
    assert report["sections"]["input_pipeline"] == skipped
    rows = report["tables"]["train_step_images_per_s"]
    assert {(r["contender"], r["dtype"], r["layout"]) for r in rows} == {
        ("charjax", "float32", "NHWC"),
        ("charjax bfloat16", "bfloat16", "NHWC"),
        ("torch", "float32", "NCHW"),
        ("torch channels_last", "float32", "NHWC"),
        ("torch bfloat16", "bfloat16", "NCHW"),
        ("torch channels_last bfloat16", "bfloat16", "NHWC"),
    }
    ratios = report["tables"]["train_step_charjax_vs_best_torch"]
    assert {r["dtype"] for r in ratios} == {"float32", "bfloat16"}
    for r in ratios:
        assert r["best_torch"].startswith("torch") and r["ratio"] > 0


def test_no_budget_left_still_writes_the_json(tmp_path):
    # The device probe runs; the sections find no time left and say so.
    report = run_gpu(tmp_path, "--no-torch", "--budget-s", "1", absent=(*ABSENT, "torch"))
    assert report["device"]["backend"] == "cpu"
    for record in report["sections"].values():
        assert record["status"] == "skipped" and "of the budget left" in record["reason"]
