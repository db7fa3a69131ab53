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

from charjax.errors import CharjaxError
from charjax.labels import CLASSES, parse_charset, restrict
from charjax.loaded import LoadedRun, batched
from charjax.preprocess import has_ink, load_image, model_input
from charjax.read import Reader, Reading

# The bundled default model (see MODEL_CARD.md; `make pretrained` rebuilds it with
# tools/bundle.py): a checkpoint step folder inside the installed package, read like any other.
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED = "pretrained"  # what `--init-from` and `charjax export` take to mean that model


@dataclass(frozen=True)
class Prediction:
    """The top-k guesses for one image, best first.

    `blank`: preprocessing found too little ink to read (`charjax.preprocess.has_ink`): no
    guesses, `chars` and `probs` are empty and `top1` is "".
    """

    chars: tuple[str, ...]
    probs: tuple[float, ...]
    blank: bool = False

    @property
    def top1(self) -> str:
        return self.chars[0] if self.chars else ""

    def as_dict(self) -> dict:
        top = [{"char": c, "prob": p} for c, p in zip(self.chars, self.probs, strict=True)]
        return {"blank": self.blank, "top": top}


BLANK = Prediction((), (), blank=True)


class Predictor(LoadedRun):
    """A trained classifier ready to predict. Build it with `charjax.load` or `Predictor.load`."""

    KINDS = ("classifier",)

    def __init__(self, model, variables: dict, meta: dict, source: str = "?"):
        super().__init__(model, variables, meta, source)
        self._forward = jax.jit(
            lambda v, x: jax.nn.softmax(model.apply(v, model_input(x), train=False))
        )

    @classmethod
    def wrong_kind(cls, source: str, kind: str) -> str:
        return f"{source} holds a {kind} model, not a character classifier"

    def probabilities(self, preprocessed: np.ndarray) -> np.ndarray:
        """Class probabilities float32 [N, 62] for already preprocessed uint8 [N, S, S]."""
        if not len(preprocessed):
            return np.zeros((0, len(CLASSES)), np.float32)
        return batched(lambda x: self._forward(self.variables, x), preprocessed)

    def predict(self, images, top_k: int = 5, charset: str | None = None) -> list[Prediction]:
        """Top-k characters and probabilities for each image, best first.

        Args:
          images: one image or a list; each a PIL image, a numpy array or a file path.
          top_k: how many guesses to return per image (1..62).
          charset: answer only from this character set (`charjax.labels.parse_charset`:
            digits, upper, lower, letters, alnum or characters like "0-9A-F"), probabilities
            renormalised over it; None: all 62 classes.
        """
        _check_top_k(top_k)  # before the (slow) preprocessing
        allowed = None if charset is None else parse_charset(charset)
        x = self.preprocess(images)
        inked = np.array([has_ink(i) for i in x], bool)
        ranked = iter(self.rank(self.probabilities(x[inked]), top_k, allowed))
        return [next(ranked) if ink else BLANK for ink in inked]

    def predict_files(
        self, paths: Sequence, top_k: int = 5, charset: str | None = None
    ) -> list[Prediction | CharjaxError]:
        """`predict` for image files, each answered on its own: a file that cannot be read
        gets its error in its place, and the others are still answered."""
        _check_top_k(top_k)
        images: list = []
        for path in paths:
            try:
                images.append(load_image(path))
            except CharjaxError as e:
                images.append(e)
        readable = [im for im in images if not isinstance(im, CharjaxError)]
        answers = iter(self.predict(readable, top_k, charset) if readable else [])
        return [im if isinstance(im, CharjaxError) else next(answers) for im in images]

    def rank(self, probs: np.ndarray, top_k: int = 5, allowed=None) -> list[Prediction]:
        """The `top_k` best guesses of each row of `probabilities`' output float32 [N, 62].

        For a caller that also needs the preprocessed images (the GUI shows them): preprocess
        once, then `rank(probabilities(x), top_k, allowed)` is what `predict` returns.

        Args:
          allowed: class indices (`parse_charset`) to answer from, renormalised over; a set
            smaller than `top_k` gives that many guesses. None: all 62 classes.
        """
        _check_top_k(top_k)
        if allowed is not None:
            probs, top_k = restrict(probs, allowed), min(top_k, len(allowed))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [
            Prediction(tuple(CLASSES[j] for j in row), tuple(float(p[j]) for j in row))
            for row, p in zip(order, probs, strict=True)
        ]

    def read(self, image, charset: str | None = None) -> Reading:
        """The text of the words and lines in one image (a `charjax.read.Reader` with its
        default settings; build a Reader to read many images or to change them)."""
        return Reader(self, charset=charset).read(image)

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Compiles the forward pass now, so the first real request is fast."""
        for b in batch_sizes:
            self.probabilities(np.zeros((b, self.spec.size, self.spec.size), np.uint8))


def _check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= len(CLASSES):
        raise CharjaxError(f"--top-k must be between 1 and {len(CLASSES)}, got {top_k}")


def default_checkpoint() -> Path:
    """The checkpoint of the default model shipped with charjax (see MODEL_CARD.md)."""
    if not any(p.name.isdigit() for p in PRETRAINED_DIR.glob("*")):
        raise CharjaxError(
            f"this charjax installation has no bundled model in {PRETRAINED_DIR}; "
            "rebuild it with `make pretrained`, or train one with `charjax train` and pass "
            "its workdir"
        )
    return PRETRAINED_DIR


def load(path=None) -> Predictor:
    """Loads a trained classifier for prediction.

    Args:
      path: a run directory from `charjax train` or a checkpoint directory; None loads the
        bundled default model (`default_checkpoint()`).
    """
    return Predictor.load(default_checkpoint() if path is None else path)
