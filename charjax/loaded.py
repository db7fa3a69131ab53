"""A run loaded for inference: the base of `Predictor` (classifiers) and `Generator`
(autoencoders, VAEs, CVAEs), and the one pad-to-bucket batching both use.

`LoadedRun.load(path)` reads a checkpoint's "model" and "meta" items once, builds the model
its config names (`build_model`, the same construction training uses), checks the arrays fit
it, and keeps the `PreprocessSpec` recorded with it, so `preprocess` turns images into exactly
the input the model was trained on.

Jitted functions compile once per input shape. `buckets` pads every chunk of a request to one
of a few fixed batch sizes, so a stream of odd-sized requests compiles only a handful of
programs.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from charjax.checkpoint import check_variables, load_for_inference
from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.models import MODELS, build_model
from charjax.preprocess import PreprocessSpec, load_image, preprocess

BUCKETS = (1, 8, 64, 256)


def run_kind(meta: dict) -> str:
    """The model kind a checkpoint's meta records ("classifier" for runs that predate kinds)."""
    return meta.get("kind", "classifier")


def buckets(*arrays: np.ndarray) -> Iterator[tuple[list[np.ndarray], int]]:
    """Chunks of `arrays` (same leading length N) zero-padded to a `BUCKETS` size.

    Yields:
      (padded chunks, one per array, all of the same bucket size; how many rows are real).
    """
    n, start = len(arrays[0]), 0
    while start < n:
        chunk = [np.asarray(a[start : start + BUCKETS[-1]]) for a in arrays]
        rows = len(chunk[0])
        size = next(b for b in BUCKETS if b >= rows)
        yield [np.pad(c, [(0, size - rows)] + [(0, 0)] * (c.ndim - 1)) for c in chunk], rows
        start += rows


def batched(fn: Callable, *arrays: np.ndarray) -> np.ndarray:
    """`fn(*arrays)` over the leading axis, in chunks padded to `BUCKETS` sizes.

    `fn` maps arrays of B rows to one array of B rows; padding rows are dropped from the result.
    """
    outs = [np.asarray(fn(*padded))[:rows] for padded, rows in buckets(*arrays)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


class LoadedRun:
    """A trained model with its variables, run config and preprocessing, ready for inference.

    Subclasses name the model kinds they serve (`KINDS`) and what to say when handed another.

    Attributes:
      model: the flax module; variables: its arrays; meta: the checkpoint's meta item;
      config: the run's `TrainConfig`; spec: its `PreprocessSpec`; source: where it came from.
    """

    KINDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model, variables: dict, meta: dict, source: str = "?"):
        self.meta = meta
        self.config = TrainConfig.from_dict(meta["config"])
        self.spec = PreprocessSpec.from_dict(meta["preprocess"])
        self.source = source
        self.model = model
        # Only non-empty collections: a model without batch norm saved an empty batch_stats.
        self.variables = {k: v for k, v in variables.items() if v}

    @classmethod
    def wrong_kind(cls, source: str, kind: str) -> str:
        """The error message for a checkpoint of a kind this class does not serve."""
        return f"{source} holds a {kind} model, which {cls.__name__} does not use"

    @classmethod
    def load(cls, path) -> Self:
        """Loads a run directory (its best checkpoint) or a checkpoint directory.

        Raises:
          CharjaxError: if it holds another kind of model, or arrays that do not fit its model.
        """
        variables, meta = load_for_inference(path)
        return cls.from_loaded(variables, meta, source=str(path))

    @classmethod
    def from_loaded(cls, variables: dict, meta: dict, source: str) -> Self:
        """The run of what `load_for_inference` read from `source` (for callers that read
        the meta first to choose the class)."""
        kind = run_kind(meta)
        if kind not in cls.KINDS:
            raise CharjaxError(cls.wrong_kind(source, kind))
        config = TrainConfig.from_dict(meta["config"])
        if config.arch not in MODELS:
            raise CharjaxError(f"{source} was trained with unknown model {config.arch!r}")
        model = build_model(config)  # the run's dtype policy, on this backend
        check_variables(model, variables, config.image_size, source)
        return cls(model, variables, meta, source=source)

    @property
    def kind(self) -> str:
        return run_kind(self.meta)

    @property
    def image_size(self) -> int:
        return self.spec.size

    def preprocess(self, images) -> np.ndarray:
        """Images (PIL, arrays or file paths; one or a list) -> uint8 [N, S, S] model input,
        through the run's recorded spec."""
        if not isinstance(images, list | tuple):
            images = [images]
        out = np.zeros((len(images), self.spec.size, self.spec.size), np.uint8)
        for i, im in enumerate(images):
            out[i] = preprocess(load_image(im) if isinstance(im, str | Path) else im, self.spec)
        return out
