"""The drawing canvas: strokes kept as data, painted with a round antialiased pen.

The image the canvas shows IS the image the model gets: every segment is painted once onto a
backing QImage (incrementally while drawing, or from the stroke list after undo / invert), the
widget just blits it, and `to_array` reads the same pixels. So what a user sees, saves with
"Save as sample" and gets predicted can never drift apart.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from PySide6.QtCore import QPointF, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from charjax.atomic import atomic_path

DEFAULT_SIZE = 400
BLACK = QColor(0, 0, 0)
WHITE = QColor(255, 255, 255)


@dataclass
class Stroke:
    """One pen-down .. pen-up gesture: points (x, y, pressure) in canvas pixels."""

    width: float
    points: list[tuple[float, float, float]] = field(default_factory=list)


def qimage_to_array(image: QImage) -> np.ndarray:
    """A QImage -> uint8 grey [H, W] (a copy).

    Qt pads every scan line to 4 bytes, so rows are read with `bytesPerLine` as the stride
    and then cut to the image width; reshaping the raw buffer to [H, W] would shear any image
    whose width is not a multiple of 4.
    """
    grey = image.convertToFormat(QImage.Format.Format_Grayscale8)
    h, w, stride = grey.height(), grey.width(), grey.bytesPerLine()
    buffer = np.frombuffer(grey.constBits(), np.uint8, count=h * stride)
    return buffer.reshape(h, stride)[:, :w].copy()


def array_to_qimage(array: np.ndarray) -> QImage:
    """uint8 grey [H, W] or RGB [H, W, 3] -> a QImage that owns its pixels."""
    array = np.ascontiguousarray(array, np.uint8)
    h, w = array.shape[:2]
    if array.ndim == 3:
        return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QImage(array.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


class Canvas(QWidget):
    """A drawing surface: square for one character, or wide (size=(width, height)) for a line.

    Signals:
      changed(bool): the drawing changed; the argument says whether a gesture is finished
        (pen up, undo, clear, invert) rather than still in progress.
    """

    changed = Signal(bool)

    def __init__(
        self, size: int | tuple[int, int] = DEFAULT_SIZE, pen_width: float = 18.0, parent=None
    ):
        super().__init__(parent)
        width, height = (size, size) if isinstance(size, int) else size
        self.setFixedSize(width, height)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.CrossCursor)
        # A click to draw takes the keyboard focus (from the Label box, say), so Ctrl+Z then
        # undoes a stroke rather than the text typed there.
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.pen_width = pen_width
        self.strokes: list[Stroke] = []
        self.inverted = False  # False: black ink on white paper
        self._current: Stroke | None = None
        self._image = QImage(width, height, QImage.Format.Format_RGB32)
        self._redraw()

    # --- the drawing as data -------------------------------------------------------------

    @property
    def ink(self) -> QColor:
        return WHITE if self.inverted else BLACK

    @property
    def paper(self) -> QColor:
        return BLACK if self.inverted else WHITE

    def is_empty(self) -> bool:
        return not self.strokes

    def set_pen_width(self, width: float) -> None:
        """Width in pixels for the strokes drawn from now on (existing ones keep theirs)."""
        self.pen_width = float(width)

    def begin_stroke(self, pos: QPointF, pressure: float = 1.0) -> None:
        """Pen down at `pos`; the mouse and the tablet handlers both land here."""
        self._current = Stroke(self.pen_width, [(pos.x(), pos.y(), pressure)])
        self.strokes.append(self._current)
        self._paint_last_segment(self._current)
        self.changed.emit(False)

    def extend_stroke(self, pos: QPointF, pressure: float = 1.0) -> None:
        if self._current is None:
            return
        self._current.points.append((pos.x(), pos.y(), pressure))
        self._paint_last_segment(self._current)
        self.changed.emit(False)

    def end_stroke(self) -> None:
        if self._current is None:
            return
        self._current = None
        self.changed.emit(True)

    def undo(self) -> None:
        """Removes the last stroke."""
        if self.strokes and self._current is None:
            self.strokes.pop()
            self._redraw()
            self.changed.emit(True)

    def clear(self) -> None:
        self._current = None
        self.strokes.clear()
        self._redraw()
        self.changed.emit(True)

    def invert(self) -> None:
        """Swaps ink and paper colours; the strokes stay."""
        self.inverted = not self.inverted
        self._redraw()
        self.changed.emit(True)

    # --- pixels ---------------------------------------------------------------------------

    def image(self) -> QImage:
        """A copy of exactly what is on screen."""
        return self._image.copy()

    def to_array(self) -> np.ndarray:
        """What is on screen as uint8 grey [H, W]: the model's raw input."""
        return qimage_to_array(self._image)

    def save_png(self, path) -> None:
        """Writes the drawing as an 8-bit grey PNG, pixel for pixel what `to_array` gives."""
        with atomic_path(path) as tmp:
            Image.fromarray(self.to_array()).save(tmp, format="PNG")  # uint8 [H, W] -> mode L

    def _pen(self, width: float, pressure: float) -> QPen:
        # Pressure modulates the slider's width rather than replacing it: a light touch still
        # gives a stroke thick enough to read, like the pen widths the model was trained on.
        pen = QPen(self.ink, max(1.0, width * (0.4 + 0.6 * pressure)))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        return pen

    def _paint_segment(self, painter: QPainter, stroke: Stroke, i: int) -> QRect:
        """Paints point i of the stroke (a dot, or the line from point i-1); returns its box."""
        x1, y1, p1 = stroke.points[i]
        x0, y0, _ = stroke.points[max(0, i - 1)]
        painter.setPen(self._pen(stroke.width, p1))
        if i == 0:
            painter.drawPoint(QPointF(x1, y1))
        else:
            painter.drawLine(QPointF(x0, y0), QPointF(x1, y1))
        pad = int(stroke.width) // 2 + 2
        left, top = int(min(x0, x1)) - pad, int(min(y0, y1)) - pad
        return QRect(left, top, int(abs(x1 - x0)) + 2 * pad + 1, int(abs(y1 - y0)) + 2 * pad + 1)

    def _paint_last_segment(self, stroke: Stroke) -> None:
        # Only the new piece is painted and repainted, so drawing stays smooth at any size.
        with _painter(self._image) as painter:
            dirty = self._paint_segment(painter, stroke, len(stroke.points) - 1)
        self.update(dirty)

    def _redraw(self) -> None:
        # The same per-segment painting as while drawing, so a redraw is pixel-identical.
        self._image.fill(self.paper)
        with _painter(self._image) as painter:
            for stroke in self.strokes:
                for i in range(len(stroke.points)):
                    self._paint_segment(painter, stroke, i)
        self.update()

    # --- Qt events ------------------------------------------------------------------------

    def sizeHint(self) -> QSize:
        return self._image.size()

    def paintEvent(self, event) -> None:
        with _painter(self) as painter:
            painter.drawImage(event.rect(), self._image, event.rect())

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.begin_stroke(event.position())

    def mouseMoveEvent(self, event) -> None:
        self.extend_stroke(event.position())

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.end_stroke()

    def tabletEvent(self, event) -> None:
        # Accepting stops Qt from also synthesising mouse events for the same pen motion.
        kind = event.type()
        if kind == event.Type.TabletPress:
            self.begin_stroke(event.position(), event.pressure())
        elif kind == event.Type.TabletMove:
            self.extend_stroke(event.position(), event.pressure())
        elif kind == event.Type.TabletRelease:
            self.end_stroke()
        event.accept()


@contextmanager
def _painter(device):
    """An antialiased QPainter on `device` that is always ended (Qt needs one per paint)."""
    painter = QPainter(device)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    try:
        yield painter
    finally:
        painter.end()


def call_while_drawing(canvas: Canvas, interval_ms: int, callback) -> QTimer:
    """Calls `callback()` when `canvas` changes: at most every `interval_ms` while the pen
    moves (a model call per mouse event would queue up behind a slow one), and at once when a
    stroke ends. Returns the timer (owned by the canvas)."""
    timer = QTimer(canvas, singleShot=True, interval=interval_ms)
    timer.timeout.connect(callback)

    def changed(finished: bool) -> None:
        if finished:
            timer.stop()
            callback()
        elif not timer.isActive():
            timer.start()

    canvas.changed.connect(changed)
    return timer
