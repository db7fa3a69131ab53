"""Orbax checkpoints: everything needed to resume a run exactly, or to use its model.

A workdir holds two CheckpointManagers:

    WORKDIR/checkpoints/<step>/   the latest few (resume from here)
    WORKDIR/best/<step>/          the best by validation accuracy (predict from here)

Each step directory has three items, so a predictor reads only what it needs:
    model   {"params", "batch_stats"}: the model (with --ema, the moving average)
    train   {"step", "opt_state", "rng"}, and "live" {"params", "batch_stats"} with --ema
    meta    JSON: run config, preprocessing spec, data description, iterator state, metrics

A step that cannot be read (a truncated array file, a deleted item) is skipped for the next
older one, with a `CharjaxWarning` that names it and says why: `load_for_inference` tries a
workdir's best/ steps and then its checkpoints/; a resume tries checkpoints/ newest first and
moves the damaged steps to WORKDIR/damaged/ (so training can write those steps again), never
deleting them.
"""

import fcntl
import gc
import logging
import shutil
import sys
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from charjax.errors import CharjaxError, CharjaxWarning, error_chain

ITEMS = ("model", "train", "meta")
DAMAGED = "damaged"  # WORKDIR/damaged/checkpoints-STEP: steps a resume could not restore


def _damage(error: BaseException) -> str | None:
    """What a damaged or missing checkpoint file says, in one short line; None for a bug.

    orbax-checkpoint 0.12 raises, for garbage or truncated JSON, JSONDecodeError; for damaged
    array data, a bare Exception carrying the whole TensorStore spec (tens of lines), caused
    by tensorstore's ValueError ("OUT_OF_RANGE ...", "ZSTD_decompressStream() failed"); for a
    deleted item, FileNotFoundError. So the chain of causes is searched for an OSError or a
    ValueError, and only its first line is kept.
    """
    for cause in error_chain(error):
        if isinstance(cause, OSError | ValueError):
            line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            return line if len(line) <= 300 else line[:297] + "..."
    return None


def _manager(directory: Path, max_to_keep: int):
    # Async saving (the default) overlaps the write with the next training steps. The latest
    # and best managers save the same step at the same time, and in a multi-process run their
    # barriers are named by step: each gets its own prefix, or the second save finds the
    # first one's barrier "already ongoing" and the run fails.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix=directory.name
        ),
    )
    return ocp.CheckpointManager(directory.absolute(), options=options, item_names=ITEMS)


def _save_args(items: dict[str, Any], meta: dict[str, Any]):
    return ocp.args.Composite(
        model=ocp.args.StandardSave(items["model"]),
        train=ocp.args.StandardSave(items["train"]),
        meta=ocp.args.JsonSave(meta),
    )


def _attempt(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """(read(), None), or (None, why) when it fails on damaged files (`_damage`).

    Orbax leaves the coroutines and asyncio tasks of a failed read behind; collected later,
    each prints the error again with its TensorStore spec ("Exception ignored in ...", "Task
    exception was never retrieved": tens of lines), so they are collected here, quietly.
    """
    try:
        return read(), None
    except Exception as e:  # orbax raises a bare Exception; `_damage` sorts it out
        reason = _damage(e)
        if reason is None:
            raise  # a bug keeps its traceback
    hook, log = sys.unraisablehook, logging.getLogger("asyncio")
    disabled, log.disabled, sys.unraisablehook = log.disabled, True, lambda _: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook, log.disabled = hook, disabled
    return None, reason


class WorkdirLock:
    """An exclusive lock on WORKDIR/.lock (process 0 of a run takes it), so a second
    `charjax train` on the same workdir stops at once instead of interleaving its checkpoints
    and metrics with the first's. The kernel releases it when the process ends, however."""

    def __init__(self, workdir: Path):
        self.file = None
        if jax.process_index() != 0:
            return
        self.file = (workdir / ".lock").open("a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise CharjaxError(
                f"another charjax train is running in {workdir}; wait for it to finish "
                "(or stop it), or choose another --workdir"
            ) from None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file drops the lock
            self.file = None


class RunCheckpoints:
    """The latest and best checkpoints of one workdir, which it holds locked until `close`."""

    def __init__(self, workdir, keep_latest: int = 2):
        self.workdir, self.keep_latest = Path(workdir), keep_latest
        self.lock = WorkdirLock(self.workdir)
        if jax.process_index() == 0:
            # A killed save leaves STEP.orbax-checkpoint-tmp behind, which orbax warns about
            # at every later save. Removed now (orbax's own cleanup runs in the background,
            # after the restore has begun); safe because the lock keeps out a live run.
            for tmp in self.workdir.glob("*/*.orbax-checkpoint-tmp*"):
                if tmp.parent.name in ("checkpoints", "best"):
                    shutil.rmtree(tmp, ignore_errors=True)
        self.latest = _manager(self.workdir / "checkpoints", keep_latest)
        self.best = _manager(self.workdir / "best", 1)

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, items: dict[str, Any], meta: dict[str, Any], best: bool = False):
        """Saves `items` ({"model": ..., "train": ...}) and `meta` at `step`.

        Collective: in a multi-process run every process calls it (orbax coordinates writes).
        """
        if self.latest.latest_step() != step:
            self.latest.save(step, args=_save_args(items, meta), force=True)
        if best and self.best.latest_step() != step:
            self.best.save(step, args=_save_args(items, meta), force=True)

    def restore_latest(self, abstract_items: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        """Restores model + train items with the shapes, dtypes and shardings of the template.

        Steps that cannot be restored (damaged files) are skipped for the next older one and
        moved to WORKDIR/damaged/, with a `CharjaxWarning` saying which, why and where.

        Args:
          abstract_items: {"model": ..., "train": ...} of jax.ShapeDtypeStruct (with shardings).
        Returns:
          (items, meta) of the newest step that restores.
        Raises:
          CharjaxError: when no step restores (nothing is moved then).
        """
        args = ocp.args.Composite(
            model=ocp.args.StandardRestore(abstract_items["model"]),
            train=ocp.args.StandardRestore(abstract_items["train"]),
            meta=ocp.args.JsonRestore(),
        )
        skipped: list[tuple[int, str]] = []
        for step in sorted(self.latest.all_steps(), reverse=True):
            restored, reason = _attempt(partial(self.latest.restore, step, args=args))
            if reason is not None:
                skipped.append((step, reason))
                continue
            if skipped:
                self._set_aside(skipped, step)
            return {"model": restored["model"], "train": restored["train"]}, restored["meta"]
        where = self.workdir / "checkpoints"
        raise CharjaxError(
            f"no checkpoint in {where} can be restored ("
            + "; ".join(f"step {s}: {r}" for s, r in skipped)
            + "); move the workdir aside to start again"
        )

    def _set_aside(self, skipped: list[tuple[int, str]], restored_step: int) -> None:
        """Moves damaged steps out of checkpoints/ (orbax would refuse to save those steps
        again, and keeping them there would hide them among good ones), and says so."""
        self.latest.close()
        aside = self.workdir / DAMAGED
        for step, reason in skipped:
            target = aside / f"checkpoints-{step}"
            if jax.process_index() == 0:  # one shared folder, one mover
                aside.mkdir(exist_ok=True)
                if target.exists():  # the same step damaged twice: keep both copies
                    target = aside / f"checkpoints-{step}-{len(list(aside.iterdir()))}"
                shutil.move(self.workdir / "checkpoints" / str(step), target)
            warnings.warn(
                CharjaxWarning(
                    f"checkpoint step {step} cannot be restored ({reason}); moved it to "
                    f"{target} (delete it when you no longer need it) and resumed from step "
                    f"{restored_step}"
                ),
                stacklevel=2,
            )
        self.latest = _manager(self.workdir / "checkpoints", self.keep_latest)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
        self.lock.release()


def _steps(manager: Path) -> list[int]:
    """The steps of a manager directory that have a meta item, newest first."""
    if not manager.is_dir():
        return []
    steps = [int(p.name) for p in manager.iterdir() if p.name.isdigit()]
    return sorted((s for s in steps if (manager / str(s) / "meta").is_dir()), reverse=True)


def find_checkpoint(path) -> tuple[Path, int]:
    """Resolves what a user passed as --checkpoint to (manager directory, step).

    Accepts a workdir (its best checkpoint, else its latest), a manager directory such as
    WORKDIR/best, or one step directory such as WORKDIR/checkpoints/1200.
    """
    path = Path(path)
    if not path.exists():
        raise CharjaxError(f"no checkpoint at {path} (no such file or directory)")
    if not path.is_dir():
        raise CharjaxError(f"{path} is not a checkpoint (expected a run directory)")
    if (path / "meta").is_dir() and path.name.isdigit():
        return path.parent, int(path.name)
    for candidate in (path / "best", path / "checkpoints", path):
        steps = _steps(candidate)
        if steps:
            return candidate, steps[0]
    raise CharjaxError(
        f"{path} holds no charjax checkpoint (expected a workdir from `charjax train`, "
        "or its best/ or checkpoints/ folder)"
    )


def _step_dirs(path) -> list[Path]:
    """The step directories `load_for_inference` tries for `path`, in order: the one step
    directory given; a manager directory's steps newest first; a workdir's best/ steps and
    then its checkpoints/ steps, each newest first."""
    directory, step = find_checkpoint(path)
    path = Path(path)
    if directory == path.parent and path.name == str(step):
        return [path]
    managers = [directory]
    if directory == path / "best":
        managers.append(path / "checkpoints")
    return [manager / str(step) for manager in managers for step in _steps(manager)]


def _read_step(step_dir: Path) -> tuple[dict[str, Any], Any]:
    """(model variables, meta) of one step directory, onto one local device."""
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
        meta = checkpointer.restore(step_dir / "meta")
    with ocp.StandardCheckpointer() as checkpointer:
        # Onto one local device, whatever mesh saved it: without a target orbax insists on
        # the saved topology, so a model trained on 2 processes or 8 GPUs would not load.
        saved = ocp.StandardCheckpointHandler().metadata(step_dir / "model").tree
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
        )
        model = checkpointer.restore(step_dir / "model", target)
    return model, meta


def load_for_inference(path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads (model variables, meta) from a checkpoint for prediction or evaluation.

    Only the "model" and "meta" items of one step are read; arrays land on the default device.
    A step that cannot be read is skipped for the next one `_step_dirs` lists, with a
    `CharjaxWarning`. The meta gets `loaded_from`: the step directory read.

    Raises:
      CharjaxError: no step can be read, or it is not a charjax checkpoint.
    """
    skipped: list[tuple[Path, str]] = []
    for step_dir in _step_dirs(path):
        step_dir = step_dir.absolute()
        read, reason = _attempt(partial(_read_step, step_dir))
        if reason is not None:
            skipped.append((step_dir, reason))
            continue
        model, meta = read
        if not isinstance(meta, dict) or "config" not in meta or "preprocess" not in meta:
            raise CharjaxError(f"{step_dir} is not a charjax checkpoint (no run config)")
        for bad, reason in skipped:
            warnings.warn(
                CharjaxWarning(
                    f"skipped the checkpoint at {bad}, which cannot be read ({reason}); "
                    f"using {step_dir}"
                ),
                stacklevel=2,
            )
        return model, {**meta, "loaded_from": str(step_dir)}
    (first, reason), *older = skipped
    also = f" (nor can the {len(older)} older ones)" if older else ""
    raise CharjaxError(f"cannot read the checkpoint at {first}: {reason}{also}")


def check_variables(model, variables, image_size: int, where: str) -> None:
    """Refuses restored variables whose arrays do not fit the model their config names.

    Params and batch statistics are compared by shape against the model's own initialisation
    (traced, not computed), so a checkpoint copied in from another run fails here with one
    clear line instead of deep inside `apply`.
    """
    dummy = jax.ShapeDtypeStruct((1, image_size, image_size, 1), np.float32)
    expected = jax.eval_shape(lambda x: model.init({"params": jax.random.PRNGKey(0)}, x), dummy)
    shapes = lambda tree: jax.tree.map(lambda a: tuple(a.shape), tree)
    parts = lambda v: {"params": v.get("params"), "batch_stats": v.get("batch_stats", {})}
    try:
        same = shapes(parts(expected)) == shapes(parts(variables))
    except (AttributeError, TypeError, ValueError):  # not a dict, or not arrays
        same = False
    if not same:
        raise CharjaxError(
            f"{where}: the saved arrays do not match its model; was it copied from another run?"
        )
