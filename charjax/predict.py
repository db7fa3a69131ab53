"""Load a trained run and recognise characters: `charjax.load(RUN).predict(images)`.

The predictor preprocesses with the spec recorded in the checkpoint (the same function and
parameters the training data went through) and runs a jitted forward pass. Batches are padded
to a few fixed sizes so a stream of odd-sized requests compiles only a handful of programs.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from charjax.backend import compute_dtype
from charjax.checkpoint import check_variables, load_for_inference
from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.models import MODELS, get_model
from charjax.preprocess import PreprocessSpec, load_image, model_input, preprocess

_BUCKETS = (1, 8, 64, 256)

# The bundled default model (see MODEL_CARD.md; `make pretrained` rebuilds it): a checkpoint
# step folder inside the installed package, read like any other checkpoint.
_PRETRAINED_DIR = Path(__file__).parent / "pretrained"


@dataclass(frozen=True)
class Prediction:
    """The top-k guesses for one image, best first."""

    chars: tuple[str, ...]
    probs: tuple[float, ...]

    @property
    def top1(self) -> str:
        return self.chars[0]

    def as_dict(self) -> dict:
        return {
            "top": [{"char": c, "prob": p} for c, p in zip(self.chars, self.probs, strict=True)]
        }


class Predictor:
    """A trained classifier ready to predict. Build it with `Predictor.load` or `charjax.load`."""

    def __init__(self, model, variables: dict, meta: dict, source: str = "?"):
        self.meta = meta
        self.config = TrainConfig.from_dict(meta["config"])
        self.spec = PreprocessSpec.from_dict(meta["preprocess"])
        self.source = source
        self.model = model
        self.variables = {k: v for k, v in variables.items() if v}
        self._forward = jax.jit(
            lambda v, x: jax.nn.softmax(model.apply(v, model_input(x), train=False))
        )

    @classmethod
    def load(cls, path) -> "Predictor":
        """Loads a run directory (its best checkpoint) or a checkpoint directory."""
        variables, meta = load_for_inference(path)
        kind = meta.get("kind", "classifier")
        if kind != "classifier":
            raise CharjaxError(f"{path} holds a {kind} model, not a character classifier")
        config = TrainConfig.from_dict(meta["config"])
        if config.arch not in MODELS:
            raise CharjaxError(f"{path} was trained with unknown model {config.arch!r}")
        model = get_model(
            config.arch,
            num_classes=len(meta.get("classes", CLASSES)),
            dtype=compute_dtype(config.dtype),  # the run's dtype policy, on this backend
        )
        check_variables(model, variables, config.image_size, str(path))
        return cls(model, variables, meta, source=str(path))

    @property
    def image_size(self) -> int:
        return self.spec.size

    def preprocess(self, images) -> np.ndarray:
        """Images (PIL, arrays or file paths) -> uint8 [N, S, S] model input."""
        if not isinstance(images, list | tuple):
            images = [images]
        out = np.zeros((len(images), self.spec.size, self.spec.size), np.uint8)
        for i, im in enumerate(images):
            if isinstance(im, str | Path):
                im = load_image(im)
            out[i] = preprocess(im, self.spec)
        return out

    def probabilities(self, preprocessed: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [N, 62] for already preprocessed uint8 [N, S, S]."""
        n = len(preprocessed)
        out = np.zeros((n, len(CLASSES)), np.float32)
        start = 0
        while start < n:
            chunk = preprocessed[start : start + _BUCKETS[-1]]
            size = next(b for b in _BUCKETS if b >= len(chunk))
            padded = np.zeros((size, *chunk.shape[1:]), np.uint8)
            padded[: len(chunk)] = chunk
            out[start : start + len(chunk)] = np.asarray(self._forward(self.variables, padded))[
                : len(chunk)
            ]
            start += len(chunk)
        return out

    def predict(self, images, top_k: int = 5) -> list[Prediction]:
        """Top-k characters and probabilities for each image, best first.

        Args:
          images: one image or a list; each a PIL image, a numpy array or a file path.
          top_k: how many guesses to return per image (1..62).
        """
        if not 1 <= top_k <= len(CLASSES):
            raise CharjaxError(f"--top-k must be between 1 and {len(CLASSES)}, got {top_k}")
        probs = self.probabilities(self.preprocess(images))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [
            Prediction(tuple(CLASSES[j] for j in row), tuple(float(p[j]) for j in row))
            for row, p in zip(order, probs, strict=True)
        ]

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Compiles the forward pass now, so the first real request is fast."""
        for b in batch_sizes:
            self.probabilities(np.zeros((b, self.spec.size, self.spec.size), np.uint8))


def default_checkpoint() -> Path:
    """The checkpoint of the default model shipped with charjax (see MODEL_CARD.md)."""
    if not any(p.name.isdigit() for p in _PRETRAINED_DIR.glob("*")):
        raise CharjaxError(
            f"this charjax installation has no bundled model in {_PRETRAINED_DIR}; "
            "rebuild it with `make pretrained`, or train one with `charjax train` and pass "
            "its workdir"
        )
    return _PRETRAINED_DIR


def load(path=None) -> Predictor:
    """Loads a trained classifier for prediction.

    Args:
      path: a run directory from `charjax train` or a checkpoint directory; None loads the
        bundled default model (`default_checkpoint()`).
    """
    return Predictor.load(default_checkpoint() if path is None else path)
