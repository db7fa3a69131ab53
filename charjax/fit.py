"""The training loop: data, devices, steps, evaluation, logging, checkpoints and resume.

    charjax train --arch resnet-small --workdir runs/resnet     # == fit(TrainConfig(), ...)

Running the same command on an existing workdir resumes from its latest checkpoint; the data
iterator's position is part of the checkpoint, so the resumed run sees exactly the batches
(and, through the step-folded rng, the augmentations) the uninterrupted run would have.

`fit` reads top to bottom, as flax's `train_and_evaluate`: data and model, restore or init,
run info, then `for step: batch -> train_step -> log every n -> eval and save every m`. What
lives across iterations (the log window, the metrics still on the devices, the latest and best
val results) is a `LoopState`, which also owns eval-and-save. The step itself is
`charjax.step.train_step`.
"""

import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from charjax import distributed, finetune, parallel
from charjax.atomic import write_json_atomic, write_text_atomic
from charjax.checkpoint import RunCheckpoints
from charjax.config import TrainConfig
from charjax.data.pipeline import BatchIterator
from charjax.data.sources import resolve_data
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.losses import Objective, improves, objective_for
from charjax.models import build_model, model_kind
from charjax.step import (
    TrainState,
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


def _drop_records_after(path: Path, step: int) -> None:
    """Rewrites metrics.jsonl without its records past `step` (and any torn last line): a run
    killed after its last checkpoint logged steps that the resume runs again, and its curves
    would double back."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)

    def logged_at(line: str) -> float:
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            return math.inf

    keep = [line for line in lines if line.endswith("\n") and logged_at(line) <= step]
    if len(keep) < len(lines):
        write_text_atomic(path, "".join(keep))


class _MetricsLog:
    """Appends JSON lines to WORKDIR/metrics.jsonl (process 0 only), and to TensorBoard;
    a resumed run's log first loses the records past the step it resumes from."""

    def __init__(self, path: Path, enabled: bool, board: TensorBoardWriter | None, step: int):
        if enabled:
            _drop_records_after(path, step)
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


def _load_data(config: TrainConfig, progress: bool):
    """(cache, train arrays, val arrays) of the run, the same on every process."""
    cache = resolve_data(config.data, config.image_size, config.data_dir, progress=progress)
    train_arrays, val_arrays = cache.arrays("train"), cache.arrays("val")
    distributed.check_same_data(train_arrays | {f"val_{k}": v for k, v in val_arrays.items()})
    if len(train_arrays["label"]) < config.batch_size:
        raise CharjaxError(
            f"the train split has {len(train_arrays['label'])} images, fewer than one batch "
            f"({config.batch_size}); lower --batch-size"
        )
    return cache, train_arrays, val_arrays


def _run_info(config: TrainConfig, cache, total_steps: int) -> dict[str, Any]:
    """What every checkpoint and config.json say about the run, beside its arrays."""
    return {
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
        # A fine-tuning run records where it started (config.init_from is what was asked).
        **(
            {"init_from": finetune.load_source(config.init_from).provenance()}
            if config.init_from
            else {}
        ),
    }


def _restore(ckpts: RunCheckpoints, state: TrainState, best_key: str, no_best):
    """(state, iterator state, best val result) of the latest checkpoint, or None if none."""
    if ckpts.latest_step() is None:
        return None
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state.checkpoint_items(),
    )
    items, meta = ckpts.restore_latest(abstract)
    return state.with_checkpoint_items(items), meta["iterator"], meta.get(best_key, no_best)


def _restore_or_init(workdir: Path, state, config, objective, mesh, total_steps, say):
    """(checkpoints, state, iterator state, best val result) to start the loop from.

    The latest checkpoint in `workdir`, if any, replaces the fresh `state`; otherwise a
    fine-tune's source model does (config.init_from); otherwise `state` stays as initialised.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = RunCheckpoints(workdir)
    try:
        restored = _restore(ckpts, state, f"best_val_{objective.best_metric}", objective.no_best)
    except BaseException:  # no checkpoint restores: the workdir is unlocked for the next try
        ckpts.close()
        raise
    if restored is not None:
        state, iterator_state, best = restored
        say(f"Resuming {workdir} from step {int(state.step)} of {total_steps}.")
        return ckpts, state, iterator_state, best
    if config.init_from:
        state = finetune.initial_state(state, config, mesh)
        say(f"Starting from {finetune.load_source(config.init_from).provenance()['path']}.")
    return ckpts, state, None, objective.no_best


def _batches(train_arrays, config: TrainConfig, mesh, iterator_state) -> BatchIterator:
    """The training batches of this process, on the mesh, from `iterator_state` on."""
    return BatchIterator(
        train_arrays,
        config.batch_size,
        train=True,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        put=lambda b: parallel.put_batch(b, mesh),
        state=iterator_state,
    )


def _progress_bar(config: TrainConfig, total_steps: int, start_step: int, progress: bool):
    return tqdm(
        total=total_steps,
        initial=start_step,
        unit="step",
        dynamic_ncols=True,
        disable=not (progress and jax.process_index() == 0),
        desc=f"train {config.arch}",
    )


def _val_evaluator(eval_step, val_arrays, config: TrainConfig, mesh, objective: Objective):
    """`state -> val metrics`, or None when the data has no val split."""
    if not len(val_arrays["label"]):
        return None
    return lambda state: evaluate_arrays(
        state, eval_step, val_arrays, config.batch_size, mesh, objective
    )


class LoopState:
    """What lives across the loop's iterations: the log window, the step metrics not yet
    fetched from the devices, the latest train and val results and the best val result.

    The step's metrics stay on the devices until the next log line (fetching them every step
    would stall the asynchronous dispatch); every fetch also checks them for NaN and inf.
    `evaluate(state)` gives the val metrics; None when the data has no val split.
    """

    def __init__(self, config, objective, log, ckpts, run_info, evaluate, best, steps_per_epoch):
        self.config, self.objective, self.log, self.ckpts = config, objective, log, ckpts
        self.run_info, self.evaluate, self.best = run_info, evaluate, best
        self.steps_per_epoch = steps_per_epoch
        self.best_key = f"best_val_{objective.best_metric}"
        self.t_start = self.window_start = time.time()
        self.window_steps, self.window_wait = 0, 0.0
        self.pending: list[tuple[int, dict]] = []
        self.train: dict | None = None
        self.val: dict | None = None
        self.eval_step: int | None = None

    def record(self, step: int, metrics: dict, waited: float) -> None:
        """Queues a step's (on-device) metrics; `waited` is the time spent waiting for data."""
        self.pending.append((step, metrics))
        self.window_steps += 1
        self.window_wait += waited

    def _fetch(self) -> dict | None:
        """The last queued metrics as floats (None if none); raises if any step went NaN/inf."""
        if not self.pending:
            return None
        fetched = jax.device_get([m for _, m in self.pending])
        for (step, _), m in zip(self.pending, fetched, strict=True):
            bad = [k for k in ("loss", "grad_norm") if not np.isfinite(m[k])]
            if bad:
                raise CharjaxError(
                    f"training diverged at step {step}: {bad[0]} is {m[bad[0]]} "
                    "(try a lower --lr, or check the data)"
                )
        self.pending.clear()
        return {k: float(v) for k, v in fetched[-1].items()}

    def _when(self, step: int, now: float) -> dict[str, float]:
        return {"step": step, "epoch": step / self.steps_per_epoch, "time": now - self.t_start}

    def log_train(self, step: int) -> dict[str, str]:
        """Writes the window's train record; returns the progress bar's postfix."""
        m = self._fetch()
        if m is None:
            return {}
        now = time.time()
        elapsed = max(now - self.window_start, 1e-9)
        m["images_per_sec"] = self.window_steps * self.config.batch_size / elapsed
        m["data_wait"] = self.window_wait / elapsed
        self.train = m
        self.log.write({"kind": "train", **self._when(step, now), **m})
        self.window_start, self.window_steps, self.window_wait = now, 0, 0.0
        return {
            "loss": f"{m['loss']:.3f}",
            **{name: f"{m[key]:.3f}" for name, key in self.objective.progress.items()},
            "lr": f"{m['lr']:.2g}",
            "img_s": f"{m['images_per_sec']:.0f}",
        }

    def save(self, step: int, state: TrainState, iterator: dict, evaluate: bool) -> None:
        """Evaluates on the val split (if asked, once per step) and saves a checkpoint.

        Collective in a multi-process run, like the evaluation and the save themselves.
        """
        self._fetch()  # never save a state that went NaN
        is_best = False
        if evaluate and self.evaluate and self.eval_step != step:
            self.eval_step = step
            self.val = self.evaluate(state)
            self.log.write(
                {"kind": "eval", "split": "val", **self._when(step, time.time()), **self.val}
            )
            value = self.val[self.objective.best_metric]
            is_best = improves(self.objective, value, self.best)
            self.best = value if is_best else self.best
        meta = {
            **self.run_info,
            "iterator": iterator,
            "step": step,
            self.best_key: self.best,
            "metrics": {"train": self.train, "val": self.val},
        }
        self.ckpts.save(step, state.checkpoint_items(), meta, best=is_best)
        self.window_start = time.time()  # eval and save time are not training throughput

    def stop(self, step: int, state: TrainState, iterator: dict, say) -> None:
        """Saves now (Ctrl-C, agreed by every process) and ends the loop."""
        self.save(step, state, iterator, evaluate=False)
        self.ckpts.wait()
        say(f"Stopped at step {step}; checkpoint saved. Run the same command to resume.")
        raise KeyboardInterrupt

    def finish(self, step: int, state: TrainState, iterator: dict) -> None:
        """The final evaluation and save; without a val split the final model is the best."""
        self.save(step, state, iterator, evaluate=True)
        if self.best == self.objective.no_best:
            meta = {**self.run_info, "iterator": iterator, "step": step}
            self.ckpts.save(step, state.checkpoint_items(), meta, best=True)

    def summary(self, workdir: Path, state: TrainState, start_step: int, total_steps: int):
        """What `fit` returns (see there)."""
        wall = time.time() - self.t_start
        steps_run = int(state.step) - start_step
        return {
            "workdir": str(workdir),
            "step": int(state.step),
            "total_steps": total_steps,
            "val": self.val,
            self.best_key: self.best,
            "train": self.train,
            "seconds": wall,
            "images_per_sec": steps_run * self.config.batch_size / max(wall, 1e-9),
            # Equal on every process of a multi-process run: their replicas never diverged.
            "params_digest": parallel.replica_digest(state.params),
        }


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
    workdir, is_main = Path(workdir), jax.process_index() == 0
    say = echo if is_main else (lambda *a, **k: None)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    model, objective = build_model(config), objective_for(config)
    _check_config_matches(workdir, config)
    cache, train_arrays, val_arrays = _load_data(config, progress)
    if config.init_from:  # validation on small data: see charjax.finetune
        finetune.check_data(config, cache)
        val_arrays = finetune.validation_arrays(config, say)
    steps_per_epoch = len(train_arrays["label"]) // config.batch_size
    total_steps = config.steps or math.ceil(config.epochs * steps_per_epoch)
    schedule = make_schedule(config, total_steps)
    state = create_train_state(model, config, make_optimizer(config, schedule), mesh)
    run_info = _run_info(config, cache, total_steps)

    ckpts, state, iterator_state, best = _restore_or_init(
        workdir, state, config, objective, mesh, total_steps, say
    )
    if is_main:
        write_json_atomic(workdir / "config.json", run_info)
    say(
        f"Training {config.arch} on {cache.path} ({len(train_arrays['label'])} train / "
        f"{len(val_arrays['label'])} val images, {config.image_size}px) for {total_steps} steps; "
        f"{parallel.describe_devices()}."
    )

    train_step, eval_step = jit_train_step(config, schedule, mesh), jit_eval_step(config, mesh)
    evaluate = _val_evaluator(eval_step, val_arrays, config, mesh, objective)
    board = TensorBoardWriter(workdir / "tensorboard") if config.tensorboard and is_main else None
    log = _MetricsLog(workdir / "metrics.jsonl", is_main, board, int(state.step))
    loop = LoopState(config, objective, log, ckpts, run_info, evaluate, best, steps_per_epoch)
    start_step = int(state.step)
    it = _batches(train_arrays, config, mesh, iterator_state)
    try:
        with (
            distributed.StopOnSignal() as stop,
            _progress_bar(config, total_steps, start_step, progress) as bar,
        ):
            for step in range(start_step + 1, total_steps + 1):
                t0 = time.time()
                batch = next(it)
                waited = time.time() - t0
                state, metrics = train_step(state, batch)
                loop.record(step, metrics, waited)
                bar.update(1)
                if step % config.log_every == 0:
                    bar.set_postfix(loop.log_train(step))
                if board and step % config.histogram_every == 0:
                    board.histograms(step, state.params)
                evaluate_now = bool(config.eval_every) and step % config.eval_every == 0
                if evaluate_now or (
                    config.checkpoint_every and step % config.checkpoint_every == 0
                ):
                    loop.save(step, state, it.state(), evaluate=evaluate_now)
                if distributed.stop_agreed(stop.requested, step, config.log_every):
                    loop.stop(step, state, it.state(), say)
            loop.finish(int(state.step), state, it.state())
    finally:
        it.close()
        ckpts.wait()
        ckpts.close()
        log.close()
    return loop.summary(workdir, state, start_step, total_steps)
