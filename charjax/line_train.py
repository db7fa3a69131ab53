"""Training the line model (`charjax.models.line.LineNet`) with a CTC loss.

    cache = build_line_cache(...)                      # charjax.data.line_data
    train_lines(LineTrainConfig(steps=8000), cache, "runs/lines")

Batches hold lines of similar width: each is padded to the next of `WIDTHS` (a handful of
compiled shapes instead of one per line), and the output steps past a line's own width are
CTC padding, so the padding teaches nothing. The step is pure and jitted with the state
donated, the batch sharded over the "data" axis of the device mesh, as the glyph trainer does.
Unlike `charjax train`, a line run does not resume (it keeps only its best model) and runs in
one process; `init` starts a new run from a saved model's parameters instead.
"""

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from charjax import parallel
from charjax.data.line_data import (
    LINE_HEIGHT,
    MAX_WIDTH,
    VERSION,
    LineDataOptions,
    build_line_cache,
    decode,
)
from charjax.data.lines import char_errors
from charjax.data.sources import cache_root
from charjax.errors import CharjaxError
from charjax.line_model import LineModel, greedy_decode, save_line_model
from charjax.models.line import STRIDE, LineNet
from charjax.step import TrainState

WIDTHS = (128, 256, 384, MAX_WIDTH)


@dataclass(frozen=True)
class LineTrainConfig:
    """How a line model trains; all defaults live here.

    Attributes:
      steps: optimizer steps.
      batch_size: lines per step (a multiple of the device count).
      lr: peak learning rate of the warmup-cosine schedule; warmup: its warmup steps.
      weight_decay: AdamW's decoupled weight decay.
      eval_every: steps between measurements of the validation character error rate.
      distort: strength of the width, slant, stroke-weight, resolution and blur
        augmentation (0: off).
      seed: seeds the initialisation, batches and augmentation.
    """

    steps: int = 8000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 300
    weight_decay: float = 1e-4
    eval_every: int = 500
    distort: float = 1.0
    seed: int = 0


def _shear(images, slope):
    """Each line slanted by its `slope` (columns per row, about the middle row): italic
    faces and slanted hands. images: [B, H, W]; slope: [B]."""
    h, w = images.shape[1:]
    # Whole columns per row: each row moves as a piece, so no stroke is doubled or dropped.
    offset = jnp.rint(slope[:, None] * (jnp.arange(h) - h / 2)[None, :]).astype(jnp.int32)
    source = jnp.arange(w)[None, None, :] + offset[..., None]  # [B, H, W]
    inside = (source >= 0) & (source < w)
    picked = jnp.take_along_axis(images, jnp.clip(source, 0, w - 1), axis=2)
    return jnp.where(inside, picked, 0.0)


def _weight(images, choice):
    """Strokes made bolder (a 2x2 max filter), lighter (a 2x2 min filter) or kept, per line
    as `choice` (0, 1, 2) says: weights of faces the lines were not rendered in."""
    pad = jnp.pad(images, ((0, 0), (0, 1), (0, 1)))
    windows = jnp.stack([pad[:, :-1, :-1], pad[:, 1:, :-1], pad[:, :-1, 1:], pad[:, 1:, 1:]])
    c = choice[:, None, None]
    return jnp.where(c == 0, windows.max(0), jnp.where(c == 1, windows.min(0), images))


def _stretch(images, widths, lengths, factor):
    """Each line's columns scaled by its `factor` (linear interpolation): condensed and wide
    faces, cramped and loose hands. Without it the model reads lines 20% wider or narrower
    than its data at about twice the error rate. A factor is clipped so the line still fits
    the batch's width and CTC keeps two output steps per character.

    images: [B, H, W]; widths, lengths, factor: [B] -> (images [B, H, W], widths [B])."""
    w = images.shape[2]
    widths = jnp.maximum(widths, 1).astype(jnp.float32)
    factor = jnp.clip(factor, 2 * lengths * STRIDE / widths, w / widths)
    source = jnp.arange(w)[None, :] / factor[:, None]  # [B, W]: the column each one shows
    left = jnp.floor(source).astype(jnp.int32)
    frac = (source - left)[:, None, :]

    def column(index):
        return jnp.take_along_axis(images, jnp.clip(index, 0, w - 1)[:, None, :], axis=2)

    out = column(left) * (1 - frac) + column(left + 1) * frac
    out = jnp.where((source < widths[:, None])[:, None, :], out, 0.0)
    return out, jnp.minimum(jnp.ceil(widths * factor), w).astype(jnp.int32)


def _blur(images, sigma):
    """Each line blurred by a gaussian of its `sigma` (rows and columns, 5 taps): out-of-focus
    photos and soft scans. images: [B, H, W]; sigma: [B] (0: unchanged)."""
    taps = jnp.arange(-2, 3, dtype=jnp.float32)
    kernel = jnp.exp(-(taps[None, :] ** 2) / (2 * jnp.maximum(sigma[:, None], 1e-3) ** 2))
    kernel = kernel / kernel.sum(axis=1, keepdims=True)  # [B, 5]
    h, w = images.shape[1:]
    pad = jnp.pad(images, ((0, 0), (2, 2), (2, 2)))
    rows = sum(kernel[:, i, None, None] * pad[:, i : i + h, :] for i in range(5))
    return sum(kernel[:, i, None, None] * rows[:, :, i : i + w] for i in range(5))


def _coarsen(images, factor):
    """Lines shown at 1/2 or 1/3 of the resolution (`factor` 2 or 3; 1: unchanged), scaled
    back up: text 11-16 px high, as in small print, low-resolution scans and distant photos.
    images: [B, H, W]; factor: [B] of 1, 2 or 3."""
    b, h, w = images.shape
    out = images
    for f in (2, 3):
        small = jax.image.resize(images, (b, round(h / f), round(w / f)), "linear")
        out = jnp.where(
            (factor == f)[:, None, None], jax.image.resize(small, images.shape, "linear"), out
        )
    return out


def _augment(key, images, widths, lengths, distort: float = 0.0):
    """Per line: ink strength 0.55-1, a vertical shift of up to 2 rows, a little noise; with
    `distort` > 0 also a width scaled by up to 1.3 ** distort either way, a slant of up to
    0.25 * distort, bolder or lighter strokes (a third of the lines each), a lower
    resolution (a sixth each at 1/2 and 1/3) and a blur of sigma up to 1.2 * distort px (a
    third).

    images: float32 [B, H, W] ink in [0, 1]; widths, lengths: [B] -> (images, widths)."""
    k1, k2, k3 = jax.random.split(key, 3)
    b = images.shape[0]
    if distort:
        k4, k5, k6, k7, k8, k9 = jax.random.split(jax.random.fold_in(key, 1), 6)
        log_factor = jax.random.uniform(k6, (b,), minval=-1.0, maxval=1.0) * distort
        images, widths = _stretch(images, widths, lengths, 1.3**log_factor)
        images = _shear(images, jax.random.uniform(k4, (b,), minval=-0.25, maxval=0.25) * distort)
        images = _weight(images, jax.random.randint(k5, (b,), 0, 3))
        images = _coarsen(images, jnp.maximum(jax.random.randint(k7, (b,), -2, 4), 1))
        sigma = jax.random.uniform(k8, (b,), minval=0.4, maxval=1.2) * distort
        images = _blur(images, jnp.where(jax.random.uniform(k9, (b,)) < 1 / 3, sigma, 0.0))
        # Reading normalises each image's contrast (`preprocess.ink_map`): so does training.
        images = images / jnp.maximum(images.max(axis=(1, 2), keepdims=True), 0.1)
    gain = jax.random.uniform(k1, (b, 1, 1), minval=0.55, maxval=1.0)
    shift = jax.random.randint(k2, (b,), -2, 3)
    shifted = jax.vmap(lambda im, s: jnp.roll(im, s, axis=0))(images, shift)
    noise = 0.04 * jax.random.normal(k3, images.shape)
    return jnp.clip(shifted * gain + jnp.abs(noise) * (shifted > 0), 0.0, 1.0), widths


def ctc_inputs(logits, widths, labels, lengths):
    """The paddings optax.ctc_loss takes: output steps past each line's width, label slots
    past each text's length (1.0 = padding)."""
    steps = jnp.arange(logits.shape[1])[None, :]
    logit_paddings = (steps >= -(-widths[:, None] // STRIDE)).astype(jnp.float32)
    label_paddings = jnp.arange(labels.shape[1])[None, :] >= lengths[:, None]
    return logit_paddings, label_paddings.astype(jnp.float32)


def train_step(
    state: TrainState, batch: dict, *, schedule, distort: float = 0.0
) -> tuple[TrainState, dict]:
    """One step on a batch {"image": uint8 [B, 32, W], "width", "label" [B, L], "length"}."""
    key = jax.random.fold_in(state.rng, state.step)
    images = batch["image"].astype(jnp.float32) / 255.0
    images, widths = _augment(key, images, batch["width"], batch["length"], distort)
    x = images[..., None]  # [B, 32, W, 1]

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, x)  # [B, W/4, K]
        pads = ctc_inputs(logits, widths, batch["label"], batch["length"])
        per_line = optax.ctc_loss(logits, pads[0], batch["label"], pads[1])
        # Per character, so long and short lines weigh alike per character.
        return jnp.sum(per_line) / jnp.maximum(jnp.sum(batch["length"]), 1)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)  # fmt: skip
    return state, {"loss": loss, "lr": schedule(state.step), "grad_norm": optax.tree.norm(grads)}


def create_state(config: LineTrainConfig, model: LineNet, schedule, params=None) -> TrainState:
    """A fresh state; with `params`, starting from them (fine-tuning) instead of an init."""
    init_key, rng = jax.random.split(jax.random.PRNGKey(config.seed))
    if params is None:
        params = model.init(init_key, jnp.zeros((1, LINE_HEIGHT, WIDTHS[0], 1)))["params"]
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    return TrainState(step=jnp.int32(0), params=params, batch_stats={}, opt_state=tx.init(params),
                      rng=jax.random.key_data(rng), apply_fn=model.apply, tx=tx)  # fmt: skip


def _bucket_of(widths: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(WIDTHS), widths)


def batches(cache: dict, rows: np.ndarray, batch_size: int, seed: int):
    """Endless batches of `rows` of the cache, each from one width bucket, padded to it."""
    rng = np.random.default_rng(seed)
    bucket = _bucket_of(cache["widths"][rows])
    members = [rows[bucket == k] for k in range(len(WIDTHS))]
    weights = np.array([len(m) for m in members], np.float64)
    while True:
        k = int(rng.choice(len(WIDTHS), p=weights / weights.sum()))
        pick = np.sort(rng.choice(members[k], batch_size, replace=len(members[k]) < batch_size))
        yield _batch(cache, pick, WIDTHS[k])


def _batch(cache: dict, pick: np.ndarray, width: int) -> dict:
    return {"image": np.ascontiguousarray(cache["images"][pick, :, :width]),
            "width": cache["widths"][pick], "label": cache["labels"][pick],
            "length": cache["lengths"][pick]}  # fmt: skip


def char_error_rate(logits_fn, params, cache: dict, rows: np.ndarray, chunk: int = 64) -> float:
    """Edits per character of the greedy CTC readings of `rows` against their texts.

    logits_fn: jitted (params, float32 [B, 32, W, 1]) -> logits; chunks are padded to `chunk`
    rows, so it compiles once per width bucket."""
    errors = chars = 0
    bucket = _bucket_of(cache["widths"][rows])
    for k, width in enumerate(WIDTHS):
        members = rows[bucket == k]
        for start in range(0, len(members), chunk):
            pick = members[start : start + chunk]
            x = np.zeros((chunk, LINE_HEIGHT, width, 1), np.float32)
            x[: len(pick), ..., 0] = cache["images"][pick, :, :width] / 255.0
            logits = np.asarray(logits_fn(params, x))
            for i, row in enumerate(pick):
                got = greedy_decode(logits[i], int(cache["widths"][row]))[0]
                want = decode(cache["labels"][row][: cache["lengths"][row]])
                errors, chars = errors + char_errors(got, want), chars + len(want)
    return errors / max(chars, 1)


def train_lines(config: LineTrainConfig, cache: dict, workdir, *, data: dict | None = None,
                init: LineModel | None = None, progress=True, echo=print):  # fmt: skip
    """Trains a LineNet on the cache's train lines; saves it to WORKDIR/model (the best by
    validation CER) and logs to WORKDIR/metrics.jsonl; `data` (the cache's options) is recorded
    in the model's meta. `init`: a loaded line model to start from (its architecture and
    parameters; a fresh optimizer and the config's schedule). Returns the summary dict."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_count() > 1:  # every process would draw the same lines
        raise CharjaxError("train-lines runs in one process (on all its local devices)")
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    model = init.model if init else LineNet()
    warmup = min(config.warmup, config.steps // 2)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, config.steps)
    state = create_state(config, model, schedule, init.params if init else None)
    state = jax.device_put(state, parallel.replicated(mesh))
    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    step_fn = jax.jit(functools.partial(train_step, schedule=schedule, distort=config.distort),
                      in_shardings=(repl, sharded), out_shardings=(repl, repl),
                      donate_argnums=0)  # fmt: skip
    logits_fn = jax.jit(lambda p, x: model.apply({"params": p}, x))
    train_rows = np.flatnonzero(cache["splits"] == 0)
    val_rows = np.flatnonzero(cache["splits"] == 1)
    stream = batches(cache, train_rows, config.batch_size, config.seed)
    best, started, log = None, time.time(), []
    bar = tqdm(range(config.steps), desc="train lines", disable=not progress)
    for step in bar:
        state, metrics = step_fn(state, parallel.put_batch(next(stream), mesh))
        last = step + 1 == config.steps
        if (step + 1) % config.eval_every and not last:
            continue
        cer = char_error_rate(logits_fn, state.params, cache, val_rows)
        record = {"step": step + 1, "loss": float(metrics["loss"]), "val_cer": cer,
                  "seconds": round(time.time() - started, 1)}  # fmt: skip
        log.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_cer=f"{cer:.2%}")
        if best is None or cer <= best["val_cer"]:
            best = record
            meta = {"train": asdict(config), "data": data, "val_cer": cer, "step": step + 1,
                    "init": init.source if init else None}  # fmt: skip
            save_line_model(workdir / "model", jax.device_get(state.params), meta, model)
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    echo(f"best validation CER {best['val_cer']:.2%} at step {best['step']}; "
         f"saved {workdir / 'model'}")  # fmt: skip
    return {"best": best, "log": log}


def default_cache_dir(options: LineDataOptions) -> Path:
    """Where `charjax train-lines` keeps the line cache of `options` by default (in the
    datasets' `cache_root`): keyed by the
    options and the cache version, so a change of either renders anew."""
    key = hashlib.sha256(json.dumps([VERSION, asdict(options)]).encode()).hexdigest()[:12]
    return cache_root() / f"lines-{key}"


def run_line_training(workdir, config: LineTrainConfig, options: LineDataOptions,
                      cache_dir=None, *, init=None, workers: int = 2, progress=True,
                      echo=print) -> dict:  # fmt: skip
    """Renders the line cache (unless it is there already; with `workers` processes) and
    trains a line model on it (from the line model saved at `init`, if given).

    Raises:
      CharjaxError: `init` is not a line model (said before any rendering).
    """
    start = LineModel.load(init) if init is not None else None
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(options)
    echo(f"line cache: {cache_dir}")
    with tqdm(total=options.lines, desc="render lines", disable=not progress) as bar:
        cache = build_line_cache(cache_dir, options, workers, progress=bar.update)
    return train_lines(config, cache, workdir, data=asdict(options), init=start,
                       progress=progress, echo=echo)  # fmt: skip
