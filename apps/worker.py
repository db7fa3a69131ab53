"""Prediction off the UI thread: load, compile, and answer one drawing at a time.

Loading a checkpoint (orbax) and compiling the jitted forward pass take a second or two, and
even a compiled prediction is a few milliseconds of numpy and XLA work; none of it may run on
the UI thread or the pen would stutter. A `_Worker` lives in its own QThread; the
`PredictionService` on the UI side talks to it through queued signals and keeps at most one
request in flight, always for the newest drawing, so a fast hand never builds a backlog.
"""

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from charjax.errors import CharjaxError
from charjax.generate import Generator
from charjax.labels import char_to_index
from charjax.predict import BLANK, Prediction, Predictor
from charjax.predict import load as load_predictor
from charjax.preprocess import PreprocessSpec, has_ink
from charjax.viz.glyphs import to_paper

# A generator's view of a drawing: (raw canvas uint8 [H, W], the classifier's top-1 character,
# the classifier's (spec, preprocessed drawing uint8 [1, S, S])) -> its reconstruction,
# uint8 [S, S] dark ink on white.
Reconstruct = Callable[[np.ndarray, str, tuple[PreprocessSpec, np.ndarray]], np.ndarray]
# Another way to answer a drawing than one character's top 5 (the line window reads text):
# (predictor, canvas uint8 [H, W], allowed class indices or None) -> a frozen dataclass
# with a `latency_ms` field, which the service fills in.
Answer = Callable[[Predictor, np.ndarray, tuple[int, ...] | None], object]


def load_reconstructor(path: str) -> Reconstruct:
    """Loads an autoencoder / VAE / CVAE run as a `Reconstruct` callable.

    The drawing goes through the generator's own recorded preprocessing (reusing the
    classifier's result when both runs recorded the same spec: preprocessing is most of a
    drawing's latency); a CVAE is told the classifier's top guess as the class, so the panel
    shows what the code looks like as that character.
    """
    generator = Generator.load(path)
    generator.reconstruct(
        np.zeros((1, generator.image_size, generator.image_size), np.uint8),
        [0] if generator.conditional else None,
    )  # compile now, not mid-stroke

    def reconstruct(image: np.ndarray, char: str, seen: tuple[PreprocessSpec, np.ndarray]):
        spec, preprocessed = seen
        x = preprocessed if spec == generator.spec else generator.preprocess(image)
        labels = [char_to_index(char)] if generator.conditional else None
        return to_paper(generator.reconstruct(x, labels))[0]

    return reconstruct


@dataclass(frozen=True)
class Result:
    """One answered drawing.

    Attributes:
      preview: uint8 [S, S], exactly what the model was given (`charjax.preprocess`).
      prediction: the top-5, best first, or `charjax.predict.BLANK` for too little ink (a
        click, a speck), which the window says instead of guessing.
      predict_ms: preprocessing + forward pass, measured in the worker.
      latency_ms: from the UI's request to this result arriving back on the UI thread.
      reconstruction: the generator's output, if one is loaded.
    """

    preview: np.ndarray
    prediction: Prediction
    predict_ms: float
    latency_ms: float = 0.0
    reconstruction: np.ndarray | None = None


class _Worker(QObject):
    loaded = Signal(str, object)  # source, PreprocessSpec
    failed = Signal(str, str)  # message, source of the model still in use ("" if none)
    generator_failed = Signal(str)
    done = Signal(float, object)  # request time (perf_counter), Result

    def __init__(self, answer: Answer | None = None, warmup: tuple[int, ...] = (1,)):
        super().__init__()
        self.predictor: Predictor | None = None
        self.reconstruct: Reconstruct | None = None
        self._answer = answer
        self._warmup = warmup

    @Slot(str)
    def load(self, path: str) -> None:
        # The model in use stays until the new one is ready: a failed open must not leave
        # the user with nothing.
        kept = self.predictor.source if self.predictor is not None else ""
        try:
            predictor = load_predictor(path)
            # Compile now, for the batch sizes the window uses, so the first stroke is instant.
            predictor.warmup(self._warmup)
        except CharjaxError as e:
            self.failed.emit(str(e), kept)
            return
        except Exception as e:  # a GUI should say what went wrong, not vanish
            traceback.print_exc()
            self.failed.emit(f"could not load {path}: {type(e).__name__}: {e}", kept)
            return
        self.predictor = predictor
        self.loaded.emit(predictor.source, predictor.spec)

    @Slot(str)
    def load_generator(self, path: str) -> None:
        try:
            self.reconstruct = load_reconstructor(path)
        except CharjaxError as e:
            self.reconstruct = None
            self.generator_failed.emit(str(e))

    @Slot(float, object, object)
    def predict(self, requested_at: float, image: np.ndarray, allowed) -> None:
        # Always answer, even with None: the service sends nothing new until it hears back.
        result = None
        try:
            if self.predictor is not None and self._answer is not None:
                result = self._answer(self.predictor, image, allowed)
            elif self.predictor is not None:
                result = self._predict(image, allowed)
        except Exception:  # keep serving the next drawing; the traceback is for a bug report
            traceback.print_exc()
        self.done.emit(requested_at, result)

    def _predict(self, image: np.ndarray, allowed=None) -> Result:
        """The Result for canvas pixels uint8 [H, W]; `allowed`: class indices to answer from
        (`charjax.labels.parse_charset`), None for all."""
        start = time.perf_counter()
        # Preprocessed once: the preview is exactly what the model was given, and the guesses
        # are `rank(probabilities(preprocess(...)))`, the composition `Predictor.predict` (and
        # so `charjax predict` on a saved PNG) runs, so the two can never disagree.
        # A blank drawing is BLANK here as in `Predictor.predict`, through the same `has_ink`.
        x = self.predictor.preprocess(image)
        if has_ink(x[0]):
            prediction = self.predictor.rank(self.predictor.probabilities(x), 5, allowed)[0]
        else:
            prediction = BLANK
        predict_ms = (time.perf_counter() - start) * 1000
        reconstruction = None
        if self.reconstruct is not None and not prediction.blank:
            reconstruction = self.reconstruct(image, prediction.top1, (self.predictor.spec, x))
        return Result(x[0], prediction, predict_ms, 0.0, reconstruction)


class PredictionService(QObject):
    """The UI thread's handle on the worker.

    Signals:
      ready(str, object): a model is loaded and compiled (its source and PreprocessSpec).
      failed(str, str): loading failed; the message is for the user, then the source of the
        model still in use ("" if none).
      generator_failed(str): the generator could not be loaded.
      result(object): a `Result` for the newest drawing submitted (or what `answer` gives).

    Args:
      answer: how the worker answers a drawing instead of a `Result` (see `Answer`).
      warmup: the batch sizes to compile when a model loads (`charjax.loaded.BUCKETS`).
    """

    ready = Signal(str, object)
    failed = Signal(str, str)
    generator_failed = Signal(str)
    result = Signal(object)

    _load = Signal(str)
    _load_generator = Signal(str)
    _predict = Signal(float, object, object)

    def __init__(self, parent=None, answer: Answer | None = None, warmup=(1,)):
        super().__init__(parent)
        self.is_ready = False
        self.allowed: tuple[int, ...] | None = None  # the character set answers come from
        self._busy = False
        self._pending: np.ndarray | None = None
        self._thread = QThread()
        self._thread.setObjectName("charjax-predict")
        self._worker = _Worker(answer, warmup)
        self._worker.moveToThread(self._thread)
        # Cross-thread connections are queued: calls run in the worker's thread, in order.
        self._load.connect(self._worker.load)
        self._load_generator.connect(self._worker.load_generator)
        self._predict.connect(self._worker.predict)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.failed.connect(self._on_failed)
        self._worker.generator_failed.connect(self.generator_failed)
        self._worker.done.connect(self._on_done)
        self._thread.start()

    def load(self, path: str) -> None:
        """Starts loading a classifier; `ready` or `failed` follows."""
        self.is_ready = False
        self._load.emit(str(path))

    def load_generator(self, path: str) -> None:
        self._load_generator.emit(str(path))

    def submit(self, image: np.ndarray) -> None:
        """Asks for a prediction of `image`; only the newest waiting drawing is kept."""
        if self._busy or not self.is_ready:
            self._pending = image
            return
        self._send(image)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting: the last result answers the newest drawing."""
        return not self._busy and self._pending is None

    def discard_pending(self) -> None:
        """Forgets a drawing still waiting to be sent (the canvas was cleared)."""
        self._pending = None

    def _send(self, image: np.ndarray) -> None:
        self._busy = True
        self._pending = None
        self._predict.emit(time.perf_counter(), image, self.allowed)

    def _on_loaded(self, source: str, spec) -> None:
        self.is_ready = True
        self.ready.emit(source, spec)
        if self._pending is not None and not self._busy:
            self._send(self._pending)

    def _on_failed(self, message: str, kept: str) -> None:
        self.is_ready = bool(kept)
        self.failed.emit(message, kept)
        if self._pending is not None and self.is_ready and not self._busy:
            self._send(self._pending)

    def _on_done(self, requested_at: float, result: Result | None) -> None:
        self._busy = False
        # A request still in flight when another model was opened answers for the old one.
        if self.is_ready and result is not None:
            latency = (time.perf_counter() - requested_at) * 1000
            self.result.emit(dataclasses.replace(result, latency_ms=latency))
        if self._pending is not None and self.is_ready:
            self._send(self._pending)

    def close(self) -> None:
        """Stops the worker thread (after its current request)."""
        self._thread.quit()
        self._thread.wait()
