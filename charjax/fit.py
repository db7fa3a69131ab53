"""The training loop: data, devices, steps, evaluation, logging, checkpoints and resume.

    charjax train --arch resnet-small --workdir runs/resnet     # == fit(TrainConfig(), ...)

Running the same command on an existing workdir resumes from its latest checkpoint; the data
iterator's position is part of the checkpoint, so the resumed run sees exactly the batches
(and, through the step-folded rng, the augmentations) the uninterrupted run would have.
"""

import contextlib
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from charjax import distributed, parallel
from charjax.atomic import write_json_atomic
from charjax.checkpoint import RunCheckpoints
from charjax.config import TrainConfig
from charjax.data.pipeline import BatchIterator
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.losses import Objective, improves, objective_for
from charjax.models import build_model, model_kind
from charjax.step import (
    create_train_state,
    jit_eval_step,
    jit_train_step,
    make_optimizer,
    make_schedule,
)
from charjax.tensorboard import TensorBoardWriter


def _check_config_matches(workdir: Path, config: TrainConfig) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        old = TrainConfig.from_dict(json.loads(path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise CharjaxError(f"{path} is unreadable ({e}); use a new --workdir") from None
    diffs = old.differences(config)
    if diffs:
        raise CharjaxError(
            f"{workdir} holds a run with other options ({'; '.join(diffs)}); "
            "repeat its options to resume, or choose a new --workdir"
        )


class _StopOnSignal:
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


class _MetricsLog:
    """Appends JSON lines to WORKDIR/metrics.jsonl (process 0 only), and to TensorBoard."""

    def __init__(self, path: Path, enabled: bool, board: TensorBoardWriter | None = None):
        self.file = path.open("a") if enabled else None
        self.board = board

    def write(self, record: dict[str, Any]) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.board:
            self.board.write(record)

    def close(self):
        if self.file:
            self.file.close()
        if self.board:
            self.board.close()


def evaluate_arrays(
    state, eval_step, arrays, batch_size: int, mesh, objective: Objective
) -> dict[str, float]:
    """The objective's metrics of `state` (loss, accuracies or reconstruction error) over
    every example of `arrays` exactly once."""
    totals: dict[str, float] = {}
    put = lambda b: parallel.put_batch(b, mesh)
    with BatchIterator(
        arrays,
        batch_size,
        train=False,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        put=put,
    ) as it:
        for batch in it:
            for k, v in jax.device_get(eval_step(state, batch)).items():
                totals[k] = totals.get(k, 0.0) + float(v)
    return objective.summarize(totals)


def fit(config: TrainConfig, workdir, *, progress: bool = True, echo=print) -> dict[str, Any]:
    """Trains (or resumes) a model of any registered kind and returns a summary.

    Args:
      config: the run's options.
      workdir: where checkpoints, config.json and metrics.jsonl go.
      progress: show a progress bar (process 0 only).
      echo: where status lines go (process 0 only).
    Returns:
      A dict with the final step, val metrics, the best val accuracy (classifiers) or loss
      (generative models), throughput and paths.
    """
    workdir = Path(workdir)
    is_main = jax.process_index() == 0
    say = echo if is_main else (lambda *a, **k: None)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    model = build_model(config)
    objective = objective_for(config)
    # Classifiers keep the best val accuracy, generative models the lowest val loss.
    best_key = f"best_val_{objective.best_metric}"
    _check_config_matches(workdir, config)

    cache = resolve_data(config.data, config.image_size, config.data_dir, progress=progress)
    train_arrays, val_arrays = cache.arrays("train"), cache.arrays("val")
    distributed.check_same_data(train_arrays | {f"val_{k}": v for k, v in val_arrays.items()})
    if len(train_arrays["label"]) < config.batch_size:
        raise CharjaxError(
            f"the train split has {len(train_arrays['label'])} images, fewer than one batch "
            f"({config.batch_size}); lower --batch-size"
        )
    steps_per_epoch = len(train_arrays["label"]) // config.batch_size
    total_steps = config.steps or math.ceil(config.epochs * steps_per_epoch)
    schedule = make_schedule(config, total_steps)
    state = create_train_state(model, config, make_optimizer(config, schedule), mesh)

    run_info = {
        "config": config.to_dict(),
        "kind": model_kind(config.arch),
        "classes": CLASSES,
        "preprocess": cache.meta["preprocess"],
        "data": {
            "spec": config.data,
            "path": str(cache.path),
            "source": cache.meta.get("source"),
            "counts": cache.meta.get("counts"),
        },
        "total_steps": total_steps,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = RunCheckpoints(workdir)
    iterator_state, best = None, objective.no_best
    if ckpts.latest_step() is not None:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
            state.checkpoint_items(),
        )
        items, meta = ckpts.restore_latest(abstract)
        state = state.with_checkpoint_items(items)
        iterator_state, best = meta["iterator"], meta.get(best_key, objective.no_best)
        say(f"Resuming {workdir} from step {int(state.step)} of {total_steps}.")
    if is_main:
        write_json_atomic(workdir / "config.json", run_info)

    say(
        f"Training {config.arch} on {cache.path} ({len(train_arrays['label'])} train / "
        f"{len(val_arrays['label'])} val images, {config.image_size}px) for {total_steps} steps; "
        f"{parallel.describe_devices()}."
    )
    train_step, eval_step = jit_train_step(config, schedule, mesh), jit_eval_step(config, mesh)
    board = TensorBoardWriter(workdir / "tensorboard") if config.tensorboard and is_main else None
    log = _MetricsLog(workdir / "metrics.jsonl", is_main, board)
    start_step = int(state.step)
    t_start = time.time()
    pending: list[tuple[int, dict]] = []
    window = {"t": time.time(), "steps": 0, "wait": 0.0}
    last = {"val": None, "train": None, "eval_step": None}

    def flush(step_now: int, write: bool = True) -> None:
        """Fetches queued step metrics, stops on NaN/inf, and (if `write`) logs the window."""
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, fetched, strict=True):
            bad = [k for k in ("loss", "grad_norm") if not np.isfinite(m[k])]
            if bad:
                raise CharjaxError(
                    f"training diverged at step {s}: {bad[0]} is {m[bad[0]]} "
                    "(try a lower --lr, or check the data)"
                )
        pending.clear()
        if not write:
            return
        now = time.time()
        elapsed = max(now - window["t"], 1e-9)
        m = {k: float(v) for k, v in fetched[-1].items()}
        m.update(
            images_per_sec=window["steps"] * config.batch_size / elapsed,
            data_wait=window["wait"] / elapsed,
        )
        last["train"] = m
        log.write(
            {
                "kind": "train",
                "step": step_now,
                "epoch": step_now / steps_per_epoch,
                "time": now - t_start,
                **m,
            }
        )
        if bar is not None:
            bar.set_postfix(
                loss=f"{m['loss']:.3f}",
                **{name: f"{m[key]:.3f}" for name, key in objective.progress.items()},
                lr=f"{m['lr']:.2g}",
                img_s=f"{m['images_per_sec']:.0f}",
            )
        window.update(t=now, steps=0, wait=0.0)

    def save(step_now: int, evaluate: bool) -> None:
        nonlocal best
        flush(step_now, write=False)  # never save a state that went NaN
        is_best = False
        if evaluate and len(val_arrays["label"]) and last["eval_step"] != step_now:
            last["eval_step"] = step_now
            val = evaluate_arrays(state, eval_step, val_arrays, config.batch_size, mesh, objective)
            last["val"] = val
            log.write(
                {
                    "kind": "eval",
                    "split": "val",
                    "step": step_now,
                    "epoch": step_now / steps_per_epoch,
                    "time": time.time() - t_start,
                    **val,
                }
            )
            is_best = improves(objective, val[objective.best_metric], best)
            best = val[objective.best_metric] if is_best else best
        meta = {
            **run_info,
            "iterator": it.state(),
            "step": step_now,
            best_key: best,
            "metrics": {"train": last["train"], "val": last["val"]},
        }
        ckpts.save(step_now, state.checkpoint_items(), meta, best=is_best)
        window["t"] = time.time()  # eval and save time are not training throughput

    bar = None
    it = BatchIterator(
        train_arrays,
        config.batch_size,
        train=True,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        put=lambda b: parallel.put_batch(b, mesh),
        state=iterator_state,
    )
    try:
        with contextlib.ExitStack() as stack:
            stop = stack.enter_context(_StopOnSignal())
            bar = stack.enter_context(
                tqdm(
                    total=total_steps,
                    initial=start_step,
                    unit="step",
                    dynamic_ncols=True,
                    disable=not (progress and is_main),
                    desc=f"train {config.arch}",
                )
            )
            step = start_step
            while step < total_steps:
                t0 = time.time()
                batch = next(it)
                window["wait"] += time.time() - t0
                state, metrics = train_step(state, batch)
                step += 1
                window["steps"] += 1
                pending.append((step, metrics))
                bar.update(1)
                if step % config.log_every == 0:
                    flush(step)
                if board and step % config.histogram_every == 0:
                    board.histograms(step, state.params)
                evaluate = config.eval_every and step % config.eval_every == 0
                if evaluate or (config.checkpoint_every and step % config.checkpoint_every == 0):
                    save(step, evaluate=bool(evaluate))
                if distributed.stop_agreed(stop.requested, step, config.log_every):
                    save(step, evaluate=False)
                    ckpts.wait()
                    say(
                        f"Stopped at step {step}; checkpoint saved. Run the same command to resume."
                    )
                    raise KeyboardInterrupt
            save(step, evaluate=True)
            if best == objective.no_best:  # no val split: the final model is the best we have
                ckpts.save(
                    step,
                    state.checkpoint_items(),
                    {**run_info, "iterator": it.state(), "step": step},
                    best=True,
                )
    finally:
        it.close()
        ckpts.wait()
        ckpts.close()
        log.close()
    wall = time.time() - t_start
    return {
        "workdir": str(workdir),
        "step": int(state.step),
        "total_steps": total_steps,
        "val": last["val"],
        best_key: best,
        "train": last["train"],
        "seconds": wall,
        "images_per_sec": (int(state.step) - start_step) * config.batch_size / max(wall, 1e-9),
        # Equal on every process of a multi-process run: their replicas never diverged.
        "params_digest": parallel.replica_digest(state.params),
    }
