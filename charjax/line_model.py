"""A trained line model, ready to read: `LineModel.load(path).read([ink, ...])`.

A saved line model is a directory, written whole or not at all (`charjax.atomic`):

    params/      orbax arrays of the LineNet's parameters
    meta.json    {"kind": "line", "model": LineNet fields, "train": config, "val_cer": ...}

Readings come from greedy CTC decoding: the best class at each output step, repeats merged,
blanks dropped. Each character keeps the steps it was read at, so the reader can box it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from charjax.atomic import atomic_path
from charjax.data.line_data import ALPHABET, BLANK, LINE_HEIGHT, normalize_line
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.models.line import STRIDE, LineNet

KIND = "line"
# The line model shipped with charjax (MODEL_CARD.md, "Line model").
BUNDLED = Path(__file__).parent / "pretrained" / "lines"
_PAD = 128  # lines are padded to a multiple of this width: few compiled shapes


@dataclass(frozen=True)
class LineRead:
    """One line's reading: its text and, per character (spaces included), the output steps
    (first, last) it was read at and its probabilities over the 62 classes."""

    text: str
    steps: tuple[tuple[int, int], ...]
    probs: np.ndarray  # float32 [len(text), 62]


def greedy_decode(logits: np.ndarray, width: int, allowed=None) -> tuple[str, list]:
    """Text and per-character (first, last) steps of one line's logits [T, K].

    width: the line's columns (steps past them are padding). allowed: class indices (of the
    62) that may be read, or None for all; blank and space always may.
    """
    logits = np.asarray(logits)[: -(-width // STRIDE)]
    if allowed is not None:
        keep = np.zeros(logits.shape[1], bool)
        keep[[BLANK, len(ALPHABET)]] = True  # blank, space
        keep[np.asarray(allowed) + 1] = True
        logits = np.where(keep, logits, -np.inf)
    best = logits.argmax(axis=1)
    chars, spans, prev = [], [], BLANK
    for t, k in enumerate(best):
        if k != BLANK and k == prev:
            spans[-1][1] = t
        elif k != BLANK:
            chars.append(ALPHABET[k - 1])
            spans.append([t, t])
        prev = k
    return "".join(chars), [tuple(s) for s in spans]


def save_line_model(path, params, meta: dict, model: LineNet | None = None) -> None:
    """Writes params and meta (of `model`, default a default LineNet) to the directory
    `path`, replacing it only once whole."""
    model = model or LineNet()
    fields = {"channels": list(model.channels), "width": model.width,
              "dilations": list(model.dilations), "num_classes": model.num_classes}  # fmt: skip
    with atomic_path(Path(path)) as tmp:
        tmp.mkdir(parents=True)
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp.absolute() / "params", params)
        meta = {"kind": KIND, "model": fields, "line_height": LINE_HEIGHT, **meta}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


class LineModel:
    """A LineNet with its parameters; `read` turns normalised lines into text."""

    def __init__(self, model: LineNet, params, meta: dict, source: str = "?"):
        self.model, self.params, self.meta, self.source = model, params, meta, source
        self._logits = jax.jit(lambda p, x: model.apply({"params": p}, x))

    @classmethod
    def load(cls, path) -> "LineModel":
        """Loads a directory `save_line_model` wrote.

        Raises:
          CharjaxError: it is missing, not a line model, or its arrays do not fit.
        """
        path = Path(path)
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise CharjaxError(f"{path} is not a charjax line model ({e})") from None
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise CharjaxError(f"{path} is not a charjax line model (no line kind in meta.json)")
        fields = meta["model"]
        model = LineNet(channels=tuple(fields["channels"]), width=fields["width"],
                        dilations=tuple(fields["dilations"]),
                        num_classes=fields["num_classes"])  # fmt: skip
        dummy = jnp.zeros((1, LINE_HEIGHT, _PAD, 1))
        target = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy)["params"])
        try:
            with ocp.StandardCheckpointer() as checkpointer:
                params = checkpointer.restore(path.absolute() / "params", target)
        except (OSError, ValueError) as e:
            line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise CharjaxError(f"cannot read the line model at {path}: {line}") from None
        return cls(model, params, meta, source=str(path))

    def warmup(self, max_width: int = 1024) -> None:
        """Compiles the model for every padded width up to `max_width` columns, so the first
        long line read is not slow."""
        for width in range(_PAD, max_width + 1, _PAD):
            self._logits(self.params, np.zeros((1, LINE_HEIGHT, width, 1), np.float32))

    def read(self, inks: list[np.ndarray], allowed=None) -> list[LineRead]:
        """Reads lines of ink (float [h, w] each, bright strokes; each one line of text)."""
        lines = [normalize_line(ink) for ink in inks]
        out = [None] * len(lines)
        widths = [-(-line.shape[1] // _PAD) * _PAD for line in lines]
        for width in sorted(set(widths)):
            rows = [i for i, w in enumerate(widths) if w == width]
            x = np.zeros((len(rows), LINE_HEIGHT, width, 1), np.float32)
            for j, i in enumerate(rows):
                x[j, :, : lines[i].shape[1], 0] = lines[i]
            logits = np.asarray(self._logits(self.params, x))
            for j, i in enumerate(rows):
                out[i] = self._reading(logits[j], lines[i].shape[1], allowed)
        return out

    def _reading(self, logits: np.ndarray, width: int, allowed) -> LineRead:
        text, spans = greedy_decode(logits, width, allowed)
        probs = np.zeros((len(text), len(CLASSES)), np.float32)
        for i, (first, last) in enumerate(spans):
            # The step the character is surest at; its odds over the 62 classes only.
            scores = logits[first : last + 1, 1 : 1 + len(CLASSES)]
            row = scores[np.argmax(scores.max(axis=1))]
            if allowed is not None:
                row = np.where(np.isin(np.arange(len(CLASSES)), allowed), row, -np.inf)
            e = np.exp(row - row.max())
            probs[i] = e / e.sum()
        return LineRead(text, tuple(spans), probs)


def load_line_model(path=None) -> LineModel:
    """Loads a line model; None means the one bundled with charjax (`BUNDLED`).

    Raises:
      CharjaxError: there is none there, or it cannot be read.
    """
    if path is None:
        if not (BUNDLED / "meta.json").is_file():
            raise CharjaxError(f"this charjax installation has no bundled line model in "
                               f"{BUNDLED}; train one with `charjax train-lines`")  # fmt: skip
        path = BUNDLED
    return LineModel.load(path)
