"""Multi-process training: `charjax train` as two CPU processes joined through jax.distributed.

Every process here is a real `python -m charjax.cli.main train` with one CPU device, talking to
the other over 127.0.0.1 (JAX's coordination service for start-up and heartbeats, gloo for the
gradient all-reduce, orbax for the collective checkpoints). Each process runs in its own process
group, which the tests kill in a `finally`, so nothing outlives a failing test.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import OPT_LEVEL

from charjax import distributed
from charjax.checkpoint import load_for_inference
from charjax.data.cache import load_cache
from charjax.errors import CharjaxError

STEPS = 40
HEARTBEAT = 30  # seconds; how fast a dead process is noticed at worst (a loaded 2-core CI
# machine can starve a process for over 10 s while it compiles)
# Generous: two cores shared with other work, and interpreter start + compile per process.
RUN_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, compile_cache: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CHARJAX_") or k == "CHARJAX_CACHE"
    }
    return env | {
        "JAX_PLATFORMS": "cpu",
        # The tests' optimisation level too (conftest.py), which the device count replaces.
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {OPT_LEVEL}",
        # Compiling init/step/eval is most of a process's start-up; later processes with the
        # same topology load the executables instead (the runs themselves are unchanged).
        "JAX_COMPILATION_CACHE_DIR": str(compile_cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _train_args(data: Path, workdir: Path, checkpoint_every: int = 0) -> list[str]:
    return [
        "train",
        "--arch",
        "tiny",
        "--data",
        str(data),
        "--image-size",
        "16",
        "--batch-size",
        "32",
        "--steps",
        str(STEPS),
        "--eval-every",
        "0",
        "--checkpoint-every",
        str(checkpoint_every),
        "--log-every",
        "5",
        "--no-progress",
        "--workdir",
        str(workdir),
    ]


class _Processes:
    """Started CLI processes, their output files, and a guaranteed kill on exit."""

    def __init__(self, logs: Path, compile_cache: Path):
        self.logs = logs
        self.compile_cache = compile_cache
        self.procs: list[subprocess.Popen] = []
        self.names: dict[subprocess.Popen, str] = {}

    def start(self, name: str, args: list[str], devices: int = 1) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        # Files, not pipes: a full pipe would block a process that logs a lot (glog on failure).
        with (
            (self.logs / f"{name}.out").open("w") as out,
            (self.logs / f"{name}.err").open("w") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "charjax.cli.main", *args],
                stdout=out,
                stderr=err,
                env=_env(devices, self.compile_cache),
                start_new_session=True,  # its own process group, killed as one
            )
        self.procs.append(proc)
        self.names[proc] = name
        return proc

    def start_pair(self, name: str, args: list[str]) -> list[subprocess.Popen]:
        """Processes 0 and 1 of one run, one CPU device each."""
        port = _free_port()
        return [
            self.start(
                f"{name}.{i}",
                [
                    *args,
                    "--coordinator",
                    f"127.0.0.1:{port}",
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(i),
                    "--heartbeat-timeout",
                    str(HEARTBEAT),
                    "--init-timeout",
                    "120",
                ],
            )
            for i in range(2)
        ]

    def output(self, proc) -> tuple[str, str]:
        name = self.names[proc]
        return (self.logs / f"{name}.out").read_text(), (self.logs / f"{name}.err").read_text()

    def summary(self, proc) -> dict:
        """The JSON line `charjax train` prints last (gloo prints its own lines on stdout)."""
        out, err = self.output(proc)
        assert proc.returncode == 0, f"{self.names[proc]} exited {proc.returncode}:\n{err[-3000:]}"
        return json.loads(out.strip().splitlines()[-1])

    def wait_all(self, procs, timeout=RUN_TIMEOUT) -> None:
        deadline = time.time() + timeout
        for proc in procs:
            proc.wait(timeout=max(deadline - time.time(), 1))

    def kill(self, proc) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax-compile-cache")


@pytest.fixture
def processes(tmp_path, compile_cache):
    procs = _Processes(tmp_path / "logs", compile_cache)
    try:
        yield procs
    finally:
        procs.kill_all()


def _params(workdir: Path):
    variables, meta = load_for_inference(workdir / "checkpoints")
    return variables["params"], meta["step"]


def _checkpoint_steps(workdir: Path) -> list[int]:
    root = workdir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in root.iterdir()
        if p.name.isdigit() and (p / "commit_success.txt").exists()
    )


@pytest.fixture(scope="module")
def uninterrupted(glyph_cache, tmp_path_factory, compile_cache):
    """One 2-process run and one 1-process run with 2 devices, side by side, same options."""
    root = tmp_path_factory.mktemp("uninterrupted")
    procs = _Processes(root / "logs", compile_cache)
    try:
        pair = procs.start_pair("two-processes", _train_args(glyph_cache, root / "two"))
        single = procs.start("one-process", _train_args(glyph_cache, root / "one"), devices=2)
        procs.wait_all([*pair, single])
        yield {
            "summaries": [procs.summary(p) for p in pair],
            "single": procs.summary(single),
            "stderr": [procs.output(p)[1] for p in pair],
            "two": root / "two",
            "one": root / "one",
        }
    finally:
        procs.kill_all()


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_two_devices(uninterrupted):
    s0, s1 = uninterrupted["summaries"]
    assert s0["step"] == s1["step"] == STEPS
    # Each process holds a full replica of the params; the same digest means they agree
    # bit for bit, i.e. both applied the same all-reduced update at every step.
    assert s0["params_digest"] == s1["params_digest"]

    # The global batch assembled from two processes' shards is the batch one process with two
    # devices sees, so the runs agree (up to the order of float sums in the all-reduce).
    p_two, step_two = _params(uninterrupted["two"])
    p_one, step_one = _params(uninterrupted["one"])
    assert step_two == step_one == STEPS
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_two, p_one)

    # Both processes wrote their part of the checkpoint (orbax saves collectively).
    model_dir = uninterrupted["two"] / "checkpoints" / str(STEPS) / "model"
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= {p.name for p in model_dir.iterdir()}

    # Status lines and metrics come from process 0 only.
    err0, err1 = uninterrupted["stderr"]
    assert "Training tiny" in err0 and "Training tiny" not in err1
    records = [json.loads(line) for line in (uninterrupted["two"] / "metrics.jsonl").open()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(5, STEPS + 1, 5))


def _wait_for_checkpoint(workdir: Path, after: int, procs, processes: _Processes) -> int:
    """Polls until a checkpoint later than step `after` is complete; returns its step."""
    deadline = time.time() + RUN_TIMEOUT
    while not [s for s in _checkpoint_steps(workdir) if s > after]:
        for proc in procs:
            assert proc.poll() is None, processes.output(proc)[1][-3000:]
        assert time.time() < deadline, "no checkpoint was written in time"
        time.sleep(0.01)
    return _checkpoint_steps(workdir)[-1]


@pytest.mark.slow
def test_a_dead_process_stops_the_other_and_the_run_resumes_exactly(
    uninterrupted, glyph_cache, tmp_path, processes
):
    workdir = tmp_path / "run"
    # Saving every 5 steps also paces the loop, so the kill lands mid-run.
    args = _train_args(glyph_cache, workdir, checkpoint_every=5)

    # A process dies (SIGKILL: no goodbye, its sockets just close) mid-run.
    survivor, victim = processes.start_pair("killed", args)
    _wait_for_checkpoint(workdir, 0, [survivor, victim], processes)
    processes.kill(victim)
    killed = time.time()
    # The survivor must notice on its own: at once through the broken all-reduce, or at the
    # latest when the coordinator misses the heartbeats (plus slack for a loaded machine).
    survivor.wait(timeout=HEARTBEAT + 30)
    noticed_after = time.time() - killed
    _, err = processes.output(survivor)
    assert survivor.returncode != 0
    assert noticed_after < HEARTBEAT + 30
    # charjax's line when a collective fails first; JAX's own when the heartbeats run out first.
    assert "lost contact with the run" in err or "another task died" in err, err[-3000:]
    assert _checkpoint_steps(workdir)[-1] < STEPS, "the run finished before it was killed"

    # Both are gone; the same commands resume from the latest complete checkpoint and end
    # exactly where the uninterrupted run did.
    pair = processes.start_pair("resumed", args)
    processes.wait_all(pair)
    s0, s1 = (processes.summary(p) for p in pair)
    assert s0["step"] == s1["step"] == STEPS
    assert s0["params_digest"] == s1["params_digest"]
    assert "Resuming" in processes.output(pair[0])[1]
    p_resumed, _ = _params(workdir)
    p_straight, _ = _params(uninterrupted["two"])
    jax.tree.map(np.testing.assert_array_equal, p_resumed, p_straight)


def test_options_make_a_spec_or_fail_in_the_users_words():
    assert distributed.spec_from_options(None, None, None) is None  # a plain local run
    spec = distributed.spec_from_options("10.0.0.1:1234", 2, 1, heartbeat_timeout=30)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("10.0.0.1:1234", 2, 1)
    assert not spec.auto and spec.heartbeat_timeout == 30
    assert "process 1 of 2 via 10.0.0.1:1234" in distributed.describe(spec)
    assert distributed.spec_from_options(None, None, None, "auto").auto  # the cluster says
    with pytest.raises(CharjaxError, match="missing --coordinator, --process-id"):
        distributed.spec_from_options(None, 2, None)
    with pytest.raises(CharjaxError, match="HOST:PORT"):
        distributed.spec_from_options("10.0.0.1", 2, 0)
    with pytest.raises(CharjaxError, match=r"--process-id must be in \[0, 2\)"):
        distributed.spec_from_options("10.0.0.1:1234", 2, 2)


def test_a_single_process_run_never_calls_jax_distributed(monkeypatch):
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append(a))
    distributed.initialize(distributed.spec_from_options(None, None, None))
    assert not called
    assert not distributed.is_lost_peer(RuntimeError("Gloo all-reduce failed"))  # 1 process


def test_only_a_collective_that_lost_its_peer_counts_as_a_lost_peer(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    # What jaxlib 0.10 raised in the survivor when its peer was killed mid-run.
    measured = ValueError(
        "UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:538] "
        "Read error [127.0.0.1]:53683: Connection reset by peer"
    )
    assert distributed.is_lost_peer(measured)
    assert distributed.is_lost_peer(
        jax.errors.JaxRuntimeError("INTERNAL: Gloo all-reduce failed: Connection closed by peer")
    )
    for not_lost in (
        ValueError("barrier timed out"),  # a slow peer, or a bug in barrier naming
        ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
        ValueError("Gloo all-reduce failed: invalid buffer size"),  # a bug, the peer is fine
        TypeError("Gloo AllGather failed: Connection reset by peer"),  # not what XLA raises
        CharjaxError("barrier"),
    ):
        assert not distributed.is_lost_peer(not_lost), not_lost


def test_processes_with_different_data_refuse_to_train(monkeypatch, glyph_cache):
    # Two processes simulated in one: the all-gather returns what each would contribute.
    # (The real collective runs in every multi-process test above, where the data agree.)
    arrays = load_cache(glyph_cache).arrays("train")
    other = dict(arrays, label=np.roll(arrays["label"], 1))  # e.g. other fonts installed
    mine = distributed._fingerprint(arrays)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    for theirs, ok in ((arrays, True), (other, False)):
        gathered = np.stack([mine, distributed._fingerprint(theirs)])
        monkeypatch.setattr(
            distributed.multihost_utils, "process_allgather", lambda x, g=gathered: g
        )
        if ok:
            distributed.check_same_data(arrays)
        else:
            with pytest.raises(CharjaxError, match=r"on process\(es\) 1 differs from process 0"):
                distributed.check_same_data(arrays)


def test_ctrl_c_in_one_process_stops_all_at_an_agreed_step(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    flags = {"other": True}  # Ctrl-C reached the other process only
    monkeypatch.setattr(
        distributed.multihost_utils,
        "process_allgather",
        lambda x: np.array([bool(x), flags["other"]]),
    )
    assert not distributed.stop_agreed(False, step=7, every=5)  # between agreement points
    assert distributed.stop_agreed(False, step=10, every=5)
    flags["other"] = False
    assert not distributed.stop_agreed(False, step=15, every=5)


def test_a_taken_coordinator_port_is_refused_in_words():
    # JAX itself would crash with SIGSEGV when process 0 cannot bind the port.
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CharjaxError, match=f"port {port}"):
            distributed._check_port_free(f"127.0.0.1:{port}")
    distributed._check_port_free(f"127.0.0.1:{port}")  # free again
