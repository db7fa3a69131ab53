"""The training configuration: every default in one place.

`charjax train` builds a `TrainConfig` from its options; the config is stored as JSON in the
workdir and in every checkpoint, so a run can be resumed, evaluated and used for prediction
without repeating its options.

    charjax train --arch resnet-small --workdir runs/resnet
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from charjax.backend import DTYPES
from charjax.errors import CharjaxError, check_range
from charjax.preprocess import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

SCHEDULES = ("cosine", "constant")
FREEZE = ("none", "backbone")

# Options that may change when a run is resumed: they affect bookkeeping, not the state. (The
# compute dtype is one: params and optimizer state are float32 whatever it is, and "auto"
# already differs between machines, so a run begun on a TPU can go on on a CPU.)
RESUMABLE_CHANGES = frozenset(
    {
        "eval_every",
        "checkpoint_every",
        "log_every",
        "data_dir",
        "tensorboard",
        "histogram_every",
        "dtype",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
      arch: model name from the registry (`charjax models` lists them).
      data: what to train on (see `charjax.data.sources`): "fonts" (the offline font
        dataset, built on first use), "handwriting" (synthetic, built on first use),
        "chars74k[:SUBSETS[:SPLIT]]" (downloaded and prepared on first use), "folder:IMAGES"
        (your own images, prepared on use), a prepared dataset directory, or a mixture of
        these, "A+B" or weighted "A:0.7+B:0.3".
      data_dir: where built datasets, downloaded archives and mixtures are kept; None means
        the user's cache folder ($CHARJAX_CACHE, else ~/.cache/charjax).
      image_size: side of the square model input, in pixels
        (`charjax.preprocess.MIN_IMAGE_SIZE`..`MAX_IMAGE_SIZE`).
      batch_size: global batch size (split over all devices).
      epochs: training length in passes over the train split (ignored when `steps` is set).
      steps: training length in optimizer steps; overrides `epochs`.
      lr: peak learning rate of AdamW.
      schedule: "cosine" (linear warmup, then cosine decay to 1% of lr) or "constant".
      warmup: fraction of the steps spent warming up.
      weight_decay: decoupled (AdamW) weight decay on kernels; biases and norms are exempt.
      label_smoothing: mass spread over the other classes in the target distribution.
      ema: decay of an exponential moving average of the params and batch statistics, kept
        beside them (0: none). The average is then the run's model: validation measures it
        and checkpoints save it for predict, eval and fine-tuning. 0.999 averages over about
        the last thousand steps (fewer early on: see `charjax.step.ema_decay`).
      augment: strength of on-device augmentation (0 disables it).
      outline: probability that augmentation hollows an image to its outline
        (`AugmentConfig.outline`; with `augment` below 1, scaled by it like the other
        effects). Off by default: it teaches outline fonts and bubble letters and costs the
        handwriting-like sets a little (MODEL_CARD.md).
      seed: seeds init, data order, augmentation and dropout.
      eval_every: evaluate on the val split every N steps (0: only at the end).
      checkpoint_every: save the latest checkpoint every N steps (and always at the end).
      log_every: append training metrics to metrics.jsonl every N steps.
      tensorboard: also write metrics as TensorBoard event files to WORKDIR/tensorboard.
      histogram_every: with `tensorboard`, write histograms of the params every N steps.
      latent_dim: size of a generative model's latent code (None: the architecture's own).
      beta: weight of the KL term in a VAE's loss (reconstruction + beta * KL).
      dtype: compute dtype of the model: "float32", "bfloat16", or "auto" (bfloat16 on GPU/TPU,
        float32 on CPU; see `charjax.backend.compute_dtype`). Params stay float32.
      init_from: start from this classifier's params and batch statistics: "pretrained" (the
        bundled model) or a run or checkpoint directory (see `charjax.finetune`).
      freeze: with `init_from`, "backbone" trains only the last dense layer; "none" all.
    """

    arch: str = "resnet-small"
    data: str = "fonts"
    data_dir: str | None = None
    image_size: int = 32
    batch_size: int = 128
    epochs: float = 15.0
    steps: int | None = None
    lr: float = 3e-3
    schedule: str = "cosine"
    warmup: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema: float = 0.0
    augment: float = 1.0
    outline: float = 0.0
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 20
    tensorboard: bool = False
    histogram_every: int = 500
    latent_dim: int | None = None
    beta: float = 1.0
    dtype: str = "auto"
    init_from: str | None = None
    freeze: str = "none"

    def __post_init__(self):
        checks = [
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (self.steps is None or self.steps > 0, f"steps must be positive, got {self.steps}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}",
            ),
            (0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1), got {self.warmup}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.ema < 1, f"ema decay must be in [0, 1) (0: none), got {self.ema}"),
            (self.augment >= 0, f"augment strength must be >= 0, got {self.augment}"),
            (0 <= self.outline <= 1, f"outline is a probability in [0, 1], got {self.outline}"),
            (
                self.eval_every >= 0 and self.checkpoint_every >= 0,
                "eval and checkpoint intervals must be >= 0 steps (0: at the end only), got "
                f"{self.eval_every} and {self.checkpoint_every}",
            ),
            # Unlike eval and checkpoints, train metrics have no "at the end only": 0 is refused.
            (self.log_every >= 1, f"log interval must be at least 1 step, got {self.log_every}"),
            (self.histogram_every > 0, f"histogram interval must be > 0: {self.histogram_every}"),
            (
                MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
                f"image size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                f"got {self.image_size}",
            ),
            (
                self.latent_dim is None or 1 <= self.latent_dim <= 1024,
                f"latent dim must be in [1, 1024], got {self.latent_dim}",
            ),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (
                self.dtype in DTYPES,
                f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}",
            ),
            (self.freeze in FREEZE, f"unknown freeze {self.freeze!r}; choose none or backbone"),
            (self.freeze == "none" or self.init_from, "--freeze backbone needs --init-from"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharjaxError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The config stored as `d` (by `to_dict`); refuses fields this version does not know,
        which a newer charjax wrote and whose meaning would be silently lost."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise CharjaxError(
                f"unknown training config fields {sorted(unknown)}; upgrade charjax?"
            )
        return cls(**d)

    def differences(self, other: "TrainConfig") -> list[str]:
        """Fields that differ and matter for resuming, as 'name: old -> new'."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b and f.name not in RESUMABLE_CHANGES:
                out.append(f"{f.name}: {a!r} -> {b!r}")
        return out


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to distort training images. Hashable, so it can be a static jit argument.

    The default magnitudes suit glyphs cropped to the ink with preprocessing's default margin
    (8% of the side): each geometric distortion at its extreme keeps even a corner of the ink
    box on the canvas; only a rare draw near several extremes at once clips a pixel or two.

    Attributes:
      strength: global multiplier. Magnitudes scale with it and effect probabilities with
        min(strength, 1), so the distribution changes continuously; 0 returns the input exactly.
      rotate: maximum absolute rotation, in degrees.
      scale: maximum relative change of size (+/-).
      shear: maximum absolute horizontal shear (x shift per unit of y).
      translate: maximum shift along each axis, as a fraction of the image side.
      elastic: standard deviation of the elastic displacement of each pixel, as a fraction of
        the image side (0.025 is 0.8 px at 32 px; Simard et al. used about 0.05, which bends
        thin strokes of some letters into other letters).
      elastic_sigma: smoothness of the elastic field: the gaussian's sigma as a fraction of
        the side. Large values bend whole strokes, small ones make local wiggles.
      stroke: probability of thickening (grey dilation) or thinning (grey erosion) the strokes,
        each half of the time, with a 3x3 window blended in by a random amount in [0.5, 1].
      outline: probability of keeping only the outline of the ink (grey dilation minus the
        image: a one-pixel line around where the ink was, which is now hollow), the way
        outline fonts and bubble letters are drawn; glyphs too thin to have an inside
        (`OUTLINE_INSIDE`) stay filled. Off by default (`TrainConfig.outline`).
      blur: probability of a 3x3 gaussian blur with sigma uniform in [0.5, 1.2] pixels.
      noise: maximum standard deviation of additive gaussian noise.
      invert: probability of inverting the image (ink dark on bright). Zero by default because
        preprocessing fixes the polarity; useful for models that must not rely on it.
    """

    strength: float = 1.0
    rotate: float = 10.0
    scale: float = 0.08
    shear: float = 0.15
    translate: float = 0.04
    elastic: float = 0.025
    elastic_sigma: float = 0.12
    stroke: float = 0.5
    outline: float = 0.0
    blur: float = 0.3
    noise: float = 0.05
    invert: float = 0.0

    def __post_init__(self):
        for name in ("strength", "rotate", "scale", "shear", "translate", "elastic", "noise"):
            check_range(f"augmentation {name}", getattr(self, name), 0)
        for name in ("stroke", "outline", "blur", "invert"):
            if not 0 <= getattr(self, name) <= 1:
                raise CharjaxError(
                    f"augmentation {name} is a probability in [0, 1], got {getattr(self, name)}"
                )
        if not 0 < self.elastic_sigma <= 1:
            raise CharjaxError(
                f"augmentation elastic_sigma is a fraction of the side in (0, 1], "
                f"got {self.elastic_sigma}"
            )
        if self.scale * self.strength >= 1:
            raise CharjaxError("augmentation scale x strength must stay below 1")


BLUR_SIGMA = (0.5, 1.2)  # pixels; the centre tap keeps 79% to 41% of the weight per axis
OUTLINE_INSIDE = 1 / 3  # the share of the ink a 3x3 erosion keeps in a glyph thick enough to hollow
