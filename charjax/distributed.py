"""Multi-process start-up: many charjax processes, one training run, through jax.distributed.

One process sees only its own machine's devices. To train on several machines (or a TPU pod
slice) every machine runs the same `charjax train` command plus how to find the others:

    charjax train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # machine A
    charjax train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1   # machine B

or the same through CHARJAX_COORDINATOR / CHARJAX_NUM_PROCESSES / CHARJAX_PROCESS_ID, or, on a
cluster that JAX recognises (SLURM, Open MPI, Cloud TPU), `--distributed auto`. After
`initialize` the rest of charjax is unchanged: `jax.devices()` lists every device of every
process, the mesh spans them all, each process feeds its shard of every global batch, and the
jitted step all-reduces gradients across machines (NCCL on GPUs, ICI on TPUs, gloo over TCP
on CPUs).

Failure handling is JAX's coordination service: every process sends heartbeats to the
coordinator (process 0). A process that misses them for `heartbeat_timeout` seconds is
declared dead and every other process is terminated, so a run never hangs forever on a
lost peer. When the loss shows up first as a failed collective (its TCP connection closed),
`exit_on_lost_peer` says so in one line and exits at once instead of waiting for that timeout.
Ctrl-C stops a run between steps (`StopOnSignal`), at a step every process agrees on
(`stop_agreed`), since the save that follows is collective.
"""

import contextlib
import hashlib
import os
import re
import signal
import socket
import sys
import threading
from dataclasses import dataclass

import jax
import numpy as np
from jax.experimental import multihost_utils

from charjax.errors import CharjaxError

ENV_COORDINATOR = "CHARJAX_COORDINATOR"
ENV_NUM_PROCESSES = "CHARJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "CHARJAX_PROCESS_ID"
ENV_MODE = "CHARJAX_DISTRIBUTED"
ENV_INIT_TIMEOUT = "CHARJAX_INIT_TIMEOUT"
ENV_HEARTBEAT_TIMEOUT = "CHARJAX_HEARTBEAT_TIMEOUT"

MODES = ("off", "auto")

# Exit status of a process that stopped because another one did (2 is a user error, 130 Ctrl-C).
EXIT_LOST_PEER = 3

# What a cross-process collective raises when a peer's TCP connection goes away (jaxlib 0.10,
# gloo on CPU; measured by killing one of two `charjax train` processes mid-run):
#   ValueError: UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:538]
#   Read error [127.0.0.1]:53683: Connection reset by peer
# XLA words every gloo collective's failure "Gloo <op> failed: " (all-reduce, AllGather, ...),
# and gloo's TCP transport names the lost connection. A peer lost in any other way (or on GPU
# and TPU) is found by the coordination service's heartbeats, which end the process itself.
_GLOO_FAILED = re.compile(r"\bGloo [\w -]+ failed: ")
_CONNECTION_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


@dataclass(frozen=True)
class DistributedSpec:
    """How this process joins a multi-process run.

    Attributes:
      coordinator: HOST:PORT of process 0, where it serves (and the others reach) JAX's
        coordination service. None only with `auto`.
      num_processes: how many processes the run has. None only with `auto`.
      process_id: this process's index in [0, num_processes). None only with `auto`.
      auto: let `jax.distributed.initialize` detect what is not given (SLURM, Open MPI, TPU).
      init_timeout: seconds to wait for every process to connect before giving up.
      heartbeat_timeout: seconds without heartbeats after which a process counts as dead and
        the run stops; also how long a finishing process waits for the others to finish.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    init_timeout: int = 300
    heartbeat_timeout: int = 60

    def __post_init__(self):
        given = {
            "--coordinator": self.coordinator,
            "--num-processes": self.num_processes,
            "--process-id": self.process_id,
        }
        missing = [name for name, value in given.items() if value is None]
        if missing and not self.auto:
            raise CharjaxError(
                f"a multi-process run needs {', '.join(given)} on every process (missing "
                f"{', '.join(missing)}); or use --distributed auto on a SLURM/TPU cluster"
            )
        if self.coordinator is not None:
            host, _, port = self.coordinator.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise CharjaxError(
                    f"--coordinator must be HOST:PORT (process 0's address and a free port, "
                    f"e.g. 10.0.0.1:1234), got {self.coordinator!r}"
                )
        if self.num_processes is not None and self.num_processes < 1:
            raise CharjaxError(f"--num-processes must be at least 1, got {self.num_processes}")
        if self.process_id is not None and not (
            0 <= self.process_id < (self.num_processes or sys.maxsize)
        ):
            raise CharjaxError(
                f"--process-id must be in [0, {self.num_processes}), got {self.process_id}"
            )
        if self.init_timeout < 1 or self.heartbeat_timeout < 1:
            raise CharjaxError("distributed timeouts must be at least 1 second")


def spec_from_options(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    mode: str = "off",
    init_timeout: int = 300,
    heartbeat_timeout: int = 60,
) -> DistributedSpec | None:
    """The spec the `charjax train` options ask for, or None for an ordinary local run.

    Nothing given and mode "off" is a single process using all its local devices: JAX's
    start-up is not called, so a laptop never waits for a coordinator that does not exist.
    """
    if mode not in MODES:
        raise CharjaxError(f"--distributed must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" and coordinator is None and num_processes is None and process_id is None:
        return None
    return DistributedSpec(
        coordinator=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        auto=mode == "auto",
        init_timeout=init_timeout,
        heartbeat_timeout=heartbeat_timeout,
    )


def describe(spec: DistributedSpec) -> str:
    """What `initialize` is about to do, for the line printed before it (it may block)."""
    if None in (spec.coordinator, spec.num_processes, spec.process_id):
        who = "(what is not given is detected from the cluster)"
    else:
        who = f"as process {spec.process_id} of {spec.num_processes} via {spec.coordinator}"
    return (
        f"Joining a multi-process run {who}; waiting up to {spec.init_timeout} s for every "
        "process to connect."
    )


def _check_port_free(coordinator: str) -> None:
    """Fails in words if process 0 cannot serve on the coordinator port.

    JAX binds it on all interfaces and, in this version, crashes (SIGSEGV, "Failed to add
    port to server") when it is taken, typically by a process left over from an earlier run.
    """
    port = int(coordinator.rpartition(":")[2])
    with socket.socket() as probe:
        # Like gRPC's own bind: a port in TIME_WAIT from a finished run is fine, a listener not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as e:
            raise CharjaxError(
                f"process 0 cannot serve the coordinator on port {port} ({e.strerror}); choose "
                "another port in --coordinator, or stop what holds it (an earlier run?)"
            ) from None


def initialize(spec: DistributedSpec | None, echo=print) -> None:
    """Joins this process to the run described by `spec` (None: nothing to do).

    Must run before anything touches a JAX device. Blocks until every process has connected;
    if one does not within `spec.init_timeout`, JAX terminates this process with a message
    from its coordination service (there is no exception to catch), which is why `echo` is
    told what is being waited for first.

    Args:
      spec: from `spec_from_options`; None for a single-process run.
      echo: where the one status line goes (every process prints it, so a stuck start-up
        shows which processes are waiting).
    """
    if spec is None:
        return
    # gloo is how CPU processes all-reduce over TCP. It is the default in recent JAX; older
    # versions had no CPU collectives unless asked, and then failed at the first psum.
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if spec.process_id == 0 and spec.coordinator is not None:
        _check_port_free(spec.coordinator)
    echo(describe(spec))
    try:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
            initialization_timeout=spec.init_timeout,
            heartbeat_timeout_seconds=spec.heartbeat_timeout,
            # A process that finishes waits at most this long for the others at exit.
            shutdown_timeout_seconds=spec.heartbeat_timeout,
        )
    except (ValueError, TypeError) as e:  # auto-detection found nothing, or a bad value
        raise CharjaxError(
            f"cannot start the multi-process run ({str(e).rstrip('.')}); give --coordinator, "
            "--num-processes and --process-id, or run under SLURM, Open MPI or on a Cloud TPU VM"
        ) from None
    except RuntimeError as e:  # e.g. called after JAX already chose its devices
        raise CharjaxError(f"cannot start the multi-process run ({e})") from None
    if spec.num_processes is not None and jax.process_count() != spec.num_processes:
        raise CharjaxError(
            f"expected {spec.num_processes} processes, JAX sees {jax.process_count()}"
        )
    echo(
        f"Process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.local_device_count()} local / {jax.device_count()} global device(s)."
    )


def _fingerprint(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """SHA-256 (as uint32 [8]) of names, shapes, dtypes, every label-like 1-D array and ~256
    evenly spaced rows of each bigger one (images), so a large dataset is not read whole."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        rows = a if a.ndim == 1 else a[:: max(1, len(a) // 256)]
        digest.update(f"{name}{a.shape}{a.dtype}".encode())
        digest.update(np.ascontiguousarray(rows).tobytes())
    return np.frombuffer(digest.digest(), np.uint32)


def check_same_data(arrays: dict[str, np.ndarray], what: str = "the training data") -> None:
    """Raises unless every process of the run holds the same `arrays`.

    Every process reads the dataset from its own disk and takes its shard of a global
    permutation, which is only right if the datasets are identical. Two machines that each
    built "fonts" from different installed fonts would otherwise train on a silent mixture.
    Collective: every process calls it. Compares hashes of the labels and a sample of the
    images, so it costs next to nothing.
    """
    if jax.process_count() == 1:
        return
    every = multihost_utils.process_allgather(_fingerprint(arrays))  # [processes, 8]
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise CharjaxError(
            f"{what} on process(es) {', '.join(map(str, differ))} differs from process 0's; "
            "prepare the dataset once (`charjax data ...`), copy the same directory to every "
            "machine (or share it) and pass it with --data"
        )


class StopOnSignal:
    """Turns the first Ctrl-C into a request to stop after the current step.

    Interrupting inside a jitted call whose input was donated would lose the state, so the
    loop checks the flag between steps and saves; a second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def stop_agreed(requested: bool, step: int, every: int) -> bool:
    """Whether to stop (and save) after `step`, given this process's Ctrl-C flag.

    One process stops as soon as asked. In a multi-process run Ctrl-C may reach one process
    only, or each at a different step, yet saving is collective: a process saving alone would
    wait forever for the others. So they compare flags every `every` steps (the log interval,
    where the loop syncs anyway) and all stop at the same step if any was asked.
    Collective in a multi-process run: every process calls it after every step.
    """
    if jax.process_count() == 1:
        return requested
    if step % every:
        return False
    return bool(np.any(multihost_utils.process_allgather(np.asarray(requested))))


def is_lost_peer(error: BaseException) -> bool:
    """Whether `error` is a cross-process collective failing because another process left
    (see `_GLOO_FAILED`); anything else, a bug included, is not."""
    if jax.process_count() == 1 or not isinstance(error, ValueError | jax.errors.JaxRuntimeError):
        return False
    text = str(error)
    return bool(_GLOO_FAILED.search(text)) and any(s in text for s in _CONNECTION_LOST)


@contextlib.contextmanager
def exit_on_lost_peer():
    """Turns a collective that failed because a peer died into one line and an exit.

    Without this the exception would propagate to interpreter exit, where JAX's shutdown
    waits (up to the heartbeat timeout) for the dead process and then aborts with a C++
    stack trace. The run cannot continue either way; the latest checkpoint is intact, since
    orbax only marks a step complete once every process has finished writing it.
    """
    try:
        yield
    except Exception as e:
        if not is_lost_peer(e):
            raise
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        sys.stdout.flush()
        sys.stderr.write(
            f"charjax: error: process {jax.process_index()} of {jax.process_count()} lost "
            f"contact with the run ({first_line}). Another process most likely stopped; its "
            "output has the cause. Start all processes again with the same command to resume "
            "from the latest checkpoint.\n"
        )
        sys.stderr.flush()
        # Skip interpreter shutdown: its jax.distributed.shutdown() would wait for the dead.
        os._exit(EXIT_LOST_PEER)
