"""The PyTorch twin of `charjax train`, for the time-to-accuracy comparison only.

Trains `torch_models`' twin of a charjax classifier with charjax's recipe, read from charjax's
own defaults (`charjax.config.TrainConfig`), on the same prepared cache read through charjax's
reader (`charjax.data.sources.resolve_data`, the same train and val splits) and batched by
charjax's own `BatchIterator` (the same per-epoch permutations, so the same batches in the same
order as `charjax train --seed S`). It writes WORKDIR/config.json and WORKDIR/metrics.jsonl
records like charjax's, so `time_to_accuracy.py --trainer torch` watches it as it watches
charjax.

    .venv/bin/python benchmarks/torch_train.py --data build/pretrained/fonts --workdir /tmp/t
    .venv/bin/python benchmarks/time_to_accuracy.py --trainer torch --data build/pretrained/fonts

The same as charjax (`charjax.step`, `charjax.losses`, `charjax.fit`):
- architecture and initialisation: the twin's layers, with flax's initialisers (lecun-normal
  truncated kernels, zero biases, unit norm scales, the last norm of each block zero);
- AdamW (b1 0.9, b2 0.999, eps 1e-8), lr 3e-3, linear warmup over 5% of the steps from 0,
  then cosine decay to 1% of lr over the run's total steps (15 epochs unless --steps), weight
  decay 5e-4 on kernels only; softmax cross-entropy with label smoothing 0.1; batch 128;
- with --ema, the moving average of `charjax train --ema` (params and batch-norm statistics,
  starting at the initial weights, decay min(ema, (1 + t) / (10 + t)) at update t), which is
  then what is evaluated and saved;
- evaluation on every val example every --eval-every steps and at the end, top-1, top-5 and
  case-insensitive top-1 (`charjax.labels.FOLD_TABLE`, as `charjax.losses.classification_hits`),
  plus a save of the state at each evaluation, as charjax saves a checkpoint there;
- augmentation (`charjax.augment`, with the same `AugmentConfig` defaults, read from the
  JAX-free `charjax.config`): the same distributions of rotation, zoom, shear,
  translation, elastic field (the same coarse-lattice gaussian smoothing), stroke
  dilation/erosion blended in, the ink's outline, 3x3 gaussian blur with a random sigma, and
  additive gaussian noise, composed in the same order; the warp is one bilinear resampling
  with zeros outside (`grid_sample`, align_corners=True: the same function as charjax's
  `map_coordinates`, checked by the test).

Where it differs:
- the random numbers: torch's generator, so the same distributions but not the same draws;
- batch norm's running variance: torch keeps the unbiased batch variance, flax the biased one
  (a factor 128*256/(128*256-1) at the first stage; eval uses the running statistics);
- torch runs eagerly in NCHW channels_last (torch's fastest CPU layout here), float32, with
  --threads intra-op threads (2: the machine's cores), the augmentation on the CPU in torch ops
  in the training thread (charjax's is inside its jitted step).
"""

import argparse
import copy
import dataclasses
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_models

from charjax.atomic import write_json_atomic
from charjax.config import BLUR_SIGMA, OUTLINE_INSIDE, AugmentConfig, TrainConfig
from charjax.data.pipeline import BatchIterator
from charjax.data.sources import resolve_data
from charjax.labels import FOLD_TABLE

STARTED = time.time()  # after the imports (torch's take ~3 s); the watcher's clock has them


AUGMENT = AugmentConfig()  # charjax train's defaults: charjax.config is JAX-free


def schedule(config: TrainConfig, total_steps: int, step: int) -> float:
    """The learning rate of update `step` (0-based), as `charjax.step.make_schedule` (optax's
    warmup_cosine_decay_schedule: linear from 0 to lr, then cosine down to lr / 100)."""
    if config.schedule == "constant":
        return config.lr
    warmup = int(config.warmup * total_steps)
    if step < warmup:
        return config.lr * step / warmup
    end = config.lr * 0.01
    decay = max(total_steps, warmup + 1) - warmup
    t = min(step - warmup, decay) / decay
    return end + (config.lr - end) * 0.5 * (1 + math.cos(math.pi * t))


def smoothing(n: int, sigma: float) -> torch.Tensor:
    """[n, m] gaussian smoothing from a coarse lattice onto n pixels, rows of unit L2 norm:
    `charjax.augment._smoothing` (the elastic field's noise lives on that lattice)."""
    m = min(n, math.ceil((n - 1) / max(1.0, sigma / 1.5))) + 1
    d = np.arange(n)[:, None] - np.linspace(0, n - 1, m)[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    return torch.from_numpy((g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32))


def warp(images, inverse, shift, displace=None):
    """Bilinear affine (+ elastic) warp about the centre, zero outside: charjax.augment._warp.

    Args:
      images: [B, 1, H, W]; inverse: [B, 2, 2] (row, col) output -> input offsets;
      shift: [B, 2] pixels; displace: optional [B, 2, H, W] pixels, before the affine map.
    """
    b, _, h, w = images.shape
    c_row, c_col = (h - 1) / 2, (w - 1) / 2
    rows = torch.arange(h, dtype=torch.float32)[None, :, None]
    cols = torch.arange(w, dtype=torch.float32)[None, None, :]
    y = rows - c_row - shift[:, 0, None, None]  # [B, H, W] (broadcast)
    x = cols - c_col - shift[:, 1, None, None]
    if displace is not None:
        y, x = y + displace[:, 0], x + displace[:, 1]
    i = inverse[:, :, :, None, None]
    src_row = i[:, 0, 0] * y + i[:, 0, 1] * x + c_row
    src_col = i[:, 1, 0] * y + i[:, 1, 1] * x + c_col
    # grid_sample's (x, y) in [-1, 1], the corner pixels' centres at +-1 (align_corners).
    grid = torch.stack([src_col * (2 / (w - 1)) - 1, src_row * (2 / (h - 1)) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def gaussian_blur(images, sigma):
    """3x3 gaussian blur with a per-example sigma [B], zero outside: charjax's form, the
    centre tap plus a share of the 3-pixel box sum, per axis."""
    g = torch.exp(-0.5 / sigma**2)[:, None, None, None]
    centre, side = (1 - g) / (1 + 2 * g), g / (1 + 2 * g)
    for window, pad in (((3, 1), (1, 0)), ((1, 3), (0, 1))):
        box = 3 * F.avg_pool2d(images, window, 1, pad, count_include_pad=True)
        images = centre * images + side * box
    return images


def outline(images):
    """What a 3x3 grey dilation adds to [B, 1, H, W]: the ink's outline, hollow inside, as
    `charjax.augment._outline`."""
    return (F.max_pool2d(images, 3, 1, 1) - images).clamp(0.0, 1.0)


def has_inside(images):
    """[B] whether each image's strokes are thick enough to hollow: `charjax.augment._has_inside`
    (a 3x3 grey erosion keeps over a third of the ink)."""
    eroded = -F.max_pool2d(-images, 3, 1, 1)
    return eroded.sum((1, 2, 3)) > OUTLINE_INSIDE * images.sum((1, 2, 3))


def augment(images, gen: torch.Generator, cfg: AugmentConfig = AUGMENT):
    """Random distortions of float [B, 1, H, W] in [0, 1], as `charjax.augment.augment_batch`
    with the same parameter distributions (see the module docstring)."""
    if cfg.strength == 0:
        return images
    b, _, h, w = images.shape
    s, p = cfg.strength, min(cfg.strength, 1.0)
    u = torch.rand(b, 11, generator=gen)

    def symmetric(k, limit):
        return (2 * u[:, k] - 1) * limit

    angle = symmetric(0, math.radians(cfg.rotate) * s)
    zoom = 1 + symmetric(1, cfg.scale * s)
    shear = symmetric(2, cfg.shear * s)
    shift = torch.stack(
        [symmetric(3, cfg.translate * s * h), symmetric(4, cfg.translate * s * w)], 1
    )
    cos, sin = torch.cos(angle), torch.sin(angle)
    inverse = (
        torch.stack(
            [torch.stack([cos, sin], 1), torch.stack([-shear * cos - sin, cos - shear * sin], 1)], 1
        )
        / zoom[:, None, None]
    )
    displace = None
    if cfg.elastic:
        rows, cols = smoothing(h, cfg.elastic_sigma * h), smoothing(w, cfg.elastic_sigma * w)
        noise = (torch.rand(b, 2, rows.shape[1], cols.shape[1], generator=gen) * 2 - 1) * math.sqrt(
            3
        )
        field = rows @ noise @ cols.T  # [B, 2, H, W], unit variance per pixel
        displace = (
            field * (cfg.elastic * s * torch.tensor([h, w], dtype=torch.float32))[:, None, None]
        )
    x = warp(images, inverse, shift, displace)
    if cfg.stroke:  # dilation, or erosion as the dilation of the negative, blended in part
        sign = torch.where(u[:, 6] < 0.5, 1.0, -1.0)[:, None, None, None]
        changed = sign * F.max_pool2d(sign * x, 3, 1, 1)
        changed = x + (0.5 + 0.5 * u[:, 7])[:, None, None, None] * (changed - x)
        x = torch.where((u[:, 5] < cfg.stroke * p)[:, None, None, None], changed, x)
    if cfg.outline:
        keep = (torch.rand(b, generator=gen) < cfg.outline * p) & has_inside(x)
        x = torch.where(keep[:, None, None, None], outline(x), x)
    if cfg.blur:
        sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[:, 9]
        x = torch.where((u[:, 8] < cfg.blur * p)[:, None, None, None], gaussian_blur(x, sigma), x)
    if cfg.noise:
        std = (u[:, 10] * cfg.noise * s)[:, None, None, None]
        x = x + std * torch.randn(x.shape, generator=gen)
    x = x.clamp(0.0, 1.0)
    if cfg.invert:
        flip = (torch.rand(b, generator=gen) < cfg.invert * p)[:, None, None, None]
        x = torch.where(flip, 1.0 - x, x)
    return x


def init_like_flax(model: torch.nn.Module) -> None:
    """Flax's default initialisers on the twin's convs and dense layers (lecun-normal,
    truncated at 2 sigma, zero biases); torch's defaults draw kernels 1/3 as large."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            fan_in = m.weight[0].numel()
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # flax's truncation correction
            torch.nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)


def model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W] -> float [B, 1, H, W] in [0, 1], as `charjax.preprocess.model_input`."""
    return torch.from_numpy(images).float().div_(255.0)[:, None]


_FOLD = torch.from_numpy(np.asarray(FOLD_TABLE, np.int64))


@torch.inference_mode()
def evaluate(model, arrays, batch_size: int) -> dict:
    """charjax's eval metrics (`Classification.summarize`) over every example once."""
    model.eval()
    sums = dict.fromkeys(("loss", "correct", "correct_ci", "correct_top5", "count"), 0.0)
    with BatchIterator(arrays, batch_size, train=False) as it:
        for batch in it:
            x = model_input(batch["image"]).contiguous(memory_format=torch.channels_last)
            logits = model(x)
            y, mask = torch.from_numpy(batch["label"]).long(), torch.from_numpy(batch["mask"])
            top = logits.topk(5, dim=1).indices
            hits = {
                "correct": top[:, 0] == y,
                "correct_ci": _FOLD[top[:, 0]] == _FOLD[y],
                "correct_top5": (top == y[:, None]).any(1),
                "loss": F.cross_entropy(logits, y, reduction="none"),
            }
            for k, v in hits.items():
                sums[k] += float((v.float() * mask).sum())
            sums["count"] += float(mask.sum())
    model.train()
    n = max(sums["count"], 1.0)
    return {
        "n": int(sums["count"]),
        "loss": sums["loss"] / n,
        "accuracy": sums["correct"] / n,
        "accuracy_ci": sums["correct_ci"] / n,
        "top5": sums["correct_top5"] / n,
    }


def _optimizer(model, config: TrainConfig) -> torch.optim.AdamW:
    # Decay only kernels (ndim > 1), as charjax's optax mask.
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)


class _Average:
    """`charjax train --ema`'s moving average (`charjax.step.ema_decay`) of a model's params
    and batch-norm statistics, from the model's initial weights on."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = copy.deepcopy(model), decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, t: int) -> None:
        """After update `t` (0-based), as charjax's step does with the state's step."""
        d = min(self.decay, (1 + t) / (10 + t))
        pairs = zip(self.model.state_dict().values(), model.state_dict().values(), strict=True)
        for mine, live in pairs:
            if mine.is_floating_point():
                mine.lerp_(live, 1 - d)
            else:  # batch norm's num_batches_tracked
                mine.copy_(live)


class _Log:
    """metrics.jsonl records as `charjax.fit` writes them, with the loop's and the process's
    clocks ("time" since the loop began, as charjax; "since_start" since this script's
    imports)."""

    def __init__(self, path: Path, steps_per_epoch: int):
        self.file = path.open("a")
        self.steps_per_epoch = steps_per_epoch
        self.t_start = time.time()

    def write(self, kind: str, step: int, metrics: dict) -> None:
        now = time.time()
        when = {"step": step, "epoch": step / self.steps_per_epoch, "time": now - self.t_start}
        extra = {"split": "val"} if kind == "eval" else {}
        record = {"kind": kind, **extra, **when, "since_start": now - STARTED, **metrics}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def train(config: TrainConfig, workdir: Path, threads: int) -> dict:
    """Trains the twin of `config.arch` on `config.data`; returns the last val metrics."""
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    cache = resolve_data(config.data, config.image_size, config.data_dir, progress=False)
    train_arrays, val_arrays = cache.arrays("train"), cache.arrays("val")
    steps_per_epoch = len(train_arrays["label"]) // config.batch_size
    total_steps = config.steps or math.ceil(config.epochs * steps_per_epoch)
    model = torch_models.build(config.arch, config.image_size)
    init_like_flax(model)
    model = model.train().to(memory_format=torch.channels_last)
    opt = _optimizer(model, config)
    average = _Average(model, config.ema) if config.ema else None
    workdir.mkdir(parents=True, exist_ok=True)
    data = {"spec": config.data, "path": str(cache.path), "source": cache.meta.get("source"),
            "counts": cache.meta.get("counts")}  # fmt: skip
    info = {"config": config.to_dict(), "trainer": f"torch {torch.__version__}", "data": data,
            "total_steps": total_steps, "threads": threads}  # fmt: skip
    write_json_atomic(workdir / "config.json", info)
    print(f"Training the torch twin of {config.arch} on {cache.path} for {total_steps} steps.")
    log = _Log(workdir / "metrics.jsonl", steps_per_epoch)
    aug = dataclasses.replace(AUGMENT, strength=config.augment, outline=config.outline)
    val = None
    with BatchIterator(train_arrays, config.batch_size, seed=config.seed) as it:
        for step in range(1, total_steps + 1):
            batch = next(it)
            lr = schedule(config, total_steps, step - 1)  # optax counts updates from 0
            for group in opt.param_groups:
                group["lr"] = lr
            x = augment(model_input(batch["image"]), gen, aug)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(batch["label"]).long()
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if average:
                average.update(model, step - 1)
            if step % config.log_every == 0:
                accuracy = float((logits.argmax(1) == y).float().mean())
                log.write("train", step, {"loss": loss.item(), "accuracy": accuracy, "lr": lr})
            if (config.eval_every and step % config.eval_every == 0) or step == total_steps:
                val = evaluate(average.model if average else model, val_arrays, config.batch_size)
                log.write("eval", step, val)
                # charjax saves a checkpoint at every evaluation; so does its twin.
                state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step}
                if average:
                    state["average"] = average.model.state_dict()
                torch.save(state, workdir / "state.pt")
    log.file.close()
    return val


def main(argv=None) -> None:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default=d.arch, choices=("resnet-small", "cnn-small"))
    p.add_argument("--data", default=d.data, help="as `charjax train --data`")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--workdir", required=True)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epochs", type=float, default=d.epochs)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--augment", type=float, default=d.augment)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ema", type=float, default=d.ema, help="as `charjax train --ema`")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = p.parse_args(argv)
    config = TrainConfig(arch=args.arch, data=args.data, image_size=args.image_size,
                         batch_size=args.batch_size, epochs=args.epochs, steps=args.steps,
                         lr=args.lr, augment=args.augment, eval_every=args.eval_every,
                         log_every=args.log_every, seed=args.seed, ema=args.ema)  # fmt: skip
    workdir = Path(args.workdir)
    if (workdir / "metrics.jsonl").exists():
        raise SystemExit(f"{workdir} already holds a run; give a new --workdir")
    try:
        val = train(config, workdir, args.threads)
    except KeyboardInterrupt:  # time_to_accuracy.py stops a run with SIGINT
        print("Stopped.")
        sys.exit(130)
    print(f"val accuracy {val['accuracy']:.4f}, case-insensitive {val['accuracy_ci']:.4f}")


if __name__ == "__main__":
    # Ctrl-C is KeyboardInterrupt even when started in the background, where the shell has
    # SIGINT ignored and Python then installs no handler (time_to_accuracy.py stops runs so).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
