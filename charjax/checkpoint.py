"""Orbax checkpoints: everything needed to resume a run exactly, or to use its model.

A workdir holds two CheckpointManagers:

    WORKDIR/checkpoints/<step>/   the latest few (resume from here)
    WORKDIR/best/<step>/          the best by validation accuracy (predict from here)

Each step directory has three items, so a predictor reads only what it needs:
    model   {"params", "batch_stats"}
    train   {"step", "opt_state", "rng"}
    meta    JSON: run config, preprocessing spec, data description, iterator state, metrics
"""

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from charjax.errors import CharjaxError

ITEMS = ("model", "train", "meta")


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


class RunCheckpoints:
    """The latest and best checkpoints of one workdir."""

    def __init__(self, workdir, keep_latest: int = 2):
        workdir = Path(workdir)
        self.latest = _manager(workdir / "checkpoints", keep_latest)
        self.best = _manager(workdir / "best", 1)

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

        Args:
          abstract_items: {"model": ..., "train": ...} of jax.ShapeDtypeStruct (with shardings).
        Returns:
          (items, meta) of the latest step.
        """
        step = self.latest.latest_step()
        restored = self.latest.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(abstract_items["model"]),
                train=ocp.args.StandardRestore(abstract_items["train"]),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return {"model": restored["model"], "train": restored["train"]}, restored["meta"]

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


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
        steps = (
            [int(p.name) for p in candidate.iterdir() if p.name.isdigit()]
            if candidate.is_dir()
            else []
        )
        steps = [s for s in steps if (candidate / str(s) / "meta").is_dir()]
        if steps:
            return candidate, max(steps)
    raise CharjaxError(
        f"{path} holds no charjax checkpoint (expected a workdir from `charjax train`, "
        "or its best/ or checkpoints/ folder)"
    )


def load_for_inference(path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads (model variables, meta) from a checkpoint for prediction or evaluation.

    Only the "model" and "meta" items of one step are read; arrays land on the default device.
    """
    directory, step = find_checkpoint(path)
    step_dir = (directory / str(step)).absolute()
    try:
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
    except (OSError, ValueError) as e:
        # What damaged or missing files raise (orbax-checkpoint 0.12): garbage or truncated
        # JSON -> JSONDecodeError, damaged array data -> ValueError from tensorstore, a deleted
        # item -> FileNotFoundError. Anything else is a bug and keeps its traceback.
        raise CharjaxError(f"cannot read the checkpoint at {step_dir}: {e}") from None
    if not isinstance(meta, dict) or "config" not in meta or "preprocess" not in meta:
        raise CharjaxError(f"{step_dir} is not a charjax checkpoint (no run config)")
    return model, meta


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
