"""Write a word or a line and see it read live: charjax-gui's wide canvas (`charjax read`'s
`charjax.read.Reader` on the drawing, the window's model, off the UI thread), with either
engine: the line model reading the line whole, or the cut into glyphs.

    charjax-gui --line                   # or View > Write a line... (Ctrl+L) in the window

The reading appears as text, and as the drawing with each character's box coloured by its
confidence (`charjax.viz.reading.reading_picture`, what `charjax read --show` writes).
"""

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from charjax.apps.canvas import Canvas, array_to_qimage, call_while_drawing
from charjax.apps.panels import CharsetChooser
from charjax.apps.worker import PredictionService
from charjax.labels import CLASSES, parse_charset
from charjax.line_model import load_line_model
from charjax.loaded import BUCKETS
from charjax.read import DEFAULT_ENGINE, ENGINES, Reader, Reading
from charjax.viz.reading import reading_picture

# A line of six to ten handwritten characters at the size people draw one character.
LINE_CANVAS = (1200, 300)
# Reading a line is several classifier calls and a search over cuts: at most this often while
# the pen moves; a finished stroke is read at once.
THROTTLE_MS = 250
# The picture of boxes under the text: smaller than the canvas, so the window fits a laptop.
PICTURE_WIDTH = 800
_SELECTABLE = Qt.TextInteractionFlag.TextSelectableByMouse


@dataclass(frozen=True)
class LineResult:
    """One read drawing: the Reading, its picture (RGB uint8 [H, W, 3]) and the times."""

    reading: Reading
    picture: np.ndarray
    read_ms: float
    latency_ms: float = 0.0


class DrawingReader:
    """The worker's answer for the wide canvas: `Reader.read` of the canvas pixels with the
    chosen engine (`charjax read --engine`); the line model is loaded the first time the
    "lines" engine reads, on the worker's thread."""

    def __init__(self, engine: str = DEFAULT_ENGINE, lines_model=None):
        self.engine = engine
        self._lines_path, self._lines = lines_model, None

    def __call__(self, predictor, image: np.ndarray, allowed) -> LineResult:
        lines = None
        if self.engine == "lines":
            if self._lines is None:
                self._lines = load_line_model(self._lines_path)
            lines = self._lines
        start = time.perf_counter()
        charset = None if allowed is None else "".join(CLASSES[i] for i in allowed)
        reading = Reader(predictor, charset=charset, lines=lines).read(image)
        read_ms = (time.perf_counter() - start) * 1000
        picture = np.asarray(reading_picture(Image.fromarray(image), reading))
        return LineResult(reading, picture, read_ms)


class LineWindow(QMainWindow):
    """A wide canvas above the text it reads and the boxes it read it from."""

    def __init__(self, checkpoint, charset: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("charjax - write a line")
        self.last_result: LineResult | None = None
        self.results_shown = 0  # counts displayed results (tests wait on it)
        self.canvas = Canvas(LINE_CANVAS, pen_width=12.0)
        self.text = QLabel("Loading the model...", textInteractionFlags=_SELECTABLE)
        font = QFont(self.text.font())
        font.setPointSizeF(font.pointSizeF() * 2.2)
        self.text.setFont(font)
        self.picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.timing = QLabel()
        self.charset = CharsetChooser()
        self.reader = DrawingReader()
        self.engine = QComboBox()
        self.engine.addItems(ENGINES)
        self.engine.setCurrentText(self.reader.engine)
        self.engine.setToolTip("lines: the line model reads the line whole; glyphs: the line "
                               "is cut into glyphs the classifier reads")  # fmt: skip
        self._build_layout()

        call_while_drawing(self.canvas, THROTTLE_MS, self.request_reading)
        # A line is read in batches of cut hypotheses: compile their bucket sizes up front.
        self.service = PredictionService(self, answer=self.reader, warmup=BUCKETS[:3])
        self.service.ready.connect(lambda source, spec: self._on_ready(source))
        self.service.failed.connect(self._on_failed)
        self.service.result.connect(self._on_result)
        self.charset.chosen.connect(self._on_charset)
        self.charset.refused.connect(self.statusBar().showMessage)
        self.engine.currentTextChanged.connect(self._on_engine)
        if charset is not None:
            self.charset.set_spec(charset)
        self.service.load(str(checkpoint))

    def _build_layout(self) -> None:
        controls = QHBoxLayout()
        for text, slot, key in (
            ("Undo", self.canvas.undo, QKeySequence.StandardKey.Undo),
            ("Clear", self.canvas.clear, "Esc"),
        ):
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep the keys for the window
            button.clicked.connect(slot)
            controls.addWidget(button)
            shortcut = QAction(text, self, shortcut=QKeySequence(key))
            shortcut.triggered.connect(slot)
            self.addAction(shortcut)
        controls.addWidget(QLabel("Read from"))
        controls.addWidget(self.charset)
        controls.addWidget(QLabel("Engine"))
        controls.addWidget(self.engine)
        controls.addStretch(1)
        controls.addWidget(self.timing)
        layout = QVBoxLayout()
        layout.addWidget(self.canvas)
        layout.addLayout(controls)
        layout.addWidget(self.text)
        layout.addWidget(self.picture, 1)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)

    def _on_ready(self, source: str) -> None:
        self.statusBar().showMessage(f"model: {source}")
        self.request_reading()

    def _on_failed(self, message: str, kept: str) -> None:
        self.text.setText(f"Cannot use this model: {message}")

    def request_reading(self) -> None:
        """Sends the canvas as it is now to the worker (or shows the empty state)."""
        if self.canvas.is_empty():
            self.service.discard_pending()
            self.last_result = None
            self.picture.clear()
            self.timing.clear()
            if self.service.is_ready:
                self.text.setText("Write a word or a line")
            return
        self.service.submit(self.canvas.to_array())

    def _on_result(self, result: LineResult) -> None:
        if self.canvas.is_empty():
            return  # cleared while this drawing was being read
        self.last_result = result
        reading = result.reading
        self.text.setText(reading.text if reading.lines else reading.note)
        picture = QPixmap.fromImage(array_to_qimage(result.picture))
        self.picture.setPixmap(
            picture.scaledToWidth(PICTURE_WIDTH, Qt.TransformationMode.SmoothTransformation)
        )
        self.timing.setText(
            f"read in {result.read_ms:.0f} ms (on screen after {result.latency_ms:.0f} ms)"
        )
        self.results_shown += 1

    def _on_charset(self, spec: str | None) -> None:
        self.service.allowed = None if spec is None else parse_charset(spec)
        self.request_reading()

    def _on_engine(self, engine: str) -> None:
        self.reader.engine = engine
        self.request_reading()

    def closeEvent(self, event) -> None:
        self.service.close()
        super().closeEvent(event)
