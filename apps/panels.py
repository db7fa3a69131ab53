"""The panels beside the canvas: the top-5 list, the character-set chooser above it and the
enlarged images.

The top-5 list groups look-alikes (`charjax.labels.LOOKALIKE_GROUPS`): once a drawing is
cropped to its ink, `o`, `O` and `0` are the same picture, so seeing all three near the top
is the model being honest, not confused. Rows of one group share a colour and a bracket, and
a note under the list gives the group's combined probability. The characters themselves are
drawn in a monospaced face, made for code, where `I`, `l` and `1` (and `O` and `0`) differ; in
the usual sans-serif UI font the first two are the same bar.
"""

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QInputDialog,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from charjax.apps.canvas import array_to_qimage
from charjax.errors import CharjaxError
from charjax.labels import lookalike_group, parse_charset
from charjax.predict import Prediction

# Colour-blind-friendly hues (Okabe-Ito), one per look-alike group; a top-5 has at most two.
GROUP_COLOURS = (QColor("#E69F00"), QColor("#009E73"))
BAR_COLOUR = QColor("#4C72B0")
TRACK_COLOUR = QColor("#E6E6E6")
# Monospaced faces people have, first found wins; all draw I, l and 1 differently.
CHAR_FAMILIES = ["DejaVu Sans Mono", "Menlo", "Consolas", "Liberation Mono", "Noto Sans Mono"]
# The character-set menu: (text, `parse_charset` spec or "" for all 62 classes).
CHARSET_CHOICES = (
    ("All 62", ""),
    ("Digits 0-9", "digits"),
    ("Capitals A-Z", "upper"),
    ("Small a-z", "lower"),
    ("Letters", "letters"),
)
CUSTOM = "custom..."


def char_font(base: QFont) -> QFont:
    """The large bold font of the top-5 characters: monospaced, so `I` and `l` differ."""
    font = QFont(base)
    font.setFamilies(CHAR_FAMILIES)
    font.setStyleHint(QFont.StyleHint.Monospace)
    font.setPointSizeF(base.pointSizeF() * 1.9)
    font.setBold(True)
    return font


def lookalike_rows(chars) -> list[tuple[str, list[int]]]:
    """Groups of rows whose characters look alike: [(group, row indices)] with 2+ rows each."""
    rows: dict[str, list[int]] = {}
    for i, char in enumerate(chars):
        group = lookalike_group(char)
        if group:
            rows.setdefault(group, []).append(i)
    return [(group, idx) for group, idx in rows.items() if len(idx) > 1]


class PredictionList(QWidget):
    """The top-k guesses as rows: character, probability bar, percentage, look-alike bracket."""

    ROW_HEIGHT = 46

    def __init__(self, rows: int = 5, parent=None):
        super().__init__(parent)
        self.rows = rows
        self.prediction: Prediction | None = None
        self.message = ""
        self.setMinimumSize(260, rows * self.ROW_HEIGHT + 8)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    @property
    def chars(self) -> tuple[str, ...]:
        """The characters shown, best first (empty when showing a message)."""
        return self.prediction.chars if self.prediction else ()

    def show_prediction(self, prediction: Prediction) -> None:
        self.prediction, self.message = prediction, ""
        self.update()

    def show_message(self, message: str) -> None:
        self.prediction, self.message = None, message
        self.update()

    def groups(self) -> list[tuple[str, list[int]]]:
        return lookalike_rows(self.chars)

    def colour_of_rows(self) -> dict[int, QColor]:
        colours = {}
        for (_, idx), colour in zip(self.groups(), GROUP_COLOURS, strict=False):
            colours.update(dict.fromkeys(idx, colour))
        return colours

    def sizeHint(self) -> QSize:
        return QSize(300, self.rows * self.ROW_HEIGHT + 8)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        try:
            if self.prediction is None:
                painter.setPen(self.palette().placeholderText().color())
                painter.drawText(
                    self.rect().adjusted(8, 8, -8, -8),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self.message,
                )
                return
            self._paint_rows(painter)
        finally:
            painter.end()

    def _paint_rows(self, painter: QPainter) -> None:
        width, h = self.width(), self.ROW_HEIGHT
        colours = self.colour_of_rows()
        big_font = char_font(self.font())
        text_font = QFont(self.font())
        bracket_x = width - 12
        bar_left, bar_right = 56, width - 92
        pairs = zip(self.prediction.chars, self.prediction.probs, strict=True)
        for i, (char, prob) in enumerate(pairs):
            top = 4 + i * h
            colour = colours.get(i)
            chip = QRectF(4, top + 3, 42, h - 6)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour.lighter(150) if colour else TRACK_COLOUR)
            painter.drawRoundedRect(chip, 6, 6)
            painter.setPen(self.palette().text().color() if colour is None else QColor("black"))
            painter.setFont(big_font)
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, char)
            track = QRectF(bar_left, top + h / 2 - 8, max(10, bar_right - bar_left), 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(TRACK_COLOUR)
            painter.drawRoundedRect(track, 4, 4)
            painter.setBrush(colour or BAR_COLOUR)
            filled = QRectF(track.left(), track.top(), track.width() * prob, track.height())
            painter.drawRoundedRect(filled, 4, 4)
            painter.setPen(self.palette().text().color())
            painter.setFont(text_font)
            painter.drawText(
                QRectF(bar_right + 4, top, 64, h),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{prob:6.1%}",
            )
        # A bracket joins the rows of each look-alike group, like a footnote mark.
        for (_, idx), colour in zip(self.groups(), GROUP_COLOURS, strict=False):
            y0 = 4 + idx[0] * h + h / 2
            y1 = 4 + idx[-1] * h + h / 2
            painter.setPen(QPen(colour, 3, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            painter.drawLine(int(bracket_x), int(y0), int(bracket_x), int(y1))
            for i in idx:
                y = 4 + i * h + h / 2
                painter.drawLine(int(bracket_x - 6), int(y), int(bracket_x), int(y))


def lookalike_note(prediction: Prediction | None) -> str:
    """One line per look-alike group in the top-k, with its combined probability (HTML)."""
    if prediction is None:
        return ""
    lines = []
    groups = lookalike_rows(prediction.chars)
    for (_, idx), colour in zip(groups, GROUP_COLOURS, strict=False):
        shown = " ".join(prediction.chars[i] for i in idx)
        total = sum(prediction.probs[i] for i in idx)
        lines.append(
            f"<span style='color:{colour.name()}'>&#9646;</span> <b>{shown}</b> look alike "
            f"(same shape once cropped): together <b>{total:.1%}</b>"
        )
    return "<br>".join(lines)


class ImagePanel(QWidget):
    """A titled square showing a small uint8 grey image enlarged with square pixels."""

    def __init__(self, title: str, side: int = 160, parent=None):
        super().__init__(parent)
        self.side = side
        self.array: np.ndarray | None = None
        self._title = QLabel(title)
        self._image = QLabel()
        self._image.setFixedSize(side, side)
        self._image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._image.setStyleSheet("background: black; color: #aaa;")
        self._image.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._title)
        layout.addWidget(self._image)

    def show_array(self, array: np.ndarray) -> None:
        """Shows `array` (uint8 [H, W]) scaled to the panel, pixels kept sharp."""
        self.array = np.asarray(array, np.uint8)
        pixmap = QPixmap.fromImage(array_to_qimage(self.array))
        self._image.setPixmap(
            pixmap.scaled(
                self.side,
                self.side,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation,
            )
        )

    def show_message(self, message: str) -> None:
        self.array = None
        self._image.clear()
        self._image.setText(message)

    def set_title(self, title: str) -> None:
        self._title.setText(title)


class Banner(QLabel):
    """The box above the panels for loading progress and problems, as tall as its text needs.

    A layout asks a word-wrapped label for its height before it knows the label's width, so
    a long message is cut off at the end; the banner asks for the height its actual width
    needs whenever its text or width changes.
    """

    def __init__(self, parent=None):
        super().__init__(parent, wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setStyleSheet("padding: 8px; background: #FFF8E1;")

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        needed = self.heightForWidth(self.width())
        if needed != self.minimumHeight():  # only on a change: no resize loop
            self.setMinimumHeight(needed)


class CharsetChooser(QComboBox):
    """Which characters an answer may be: all 62, a named set, or a custom one ("Custom...").

    Signals:
      chosen(object): the new `parse_charset` spec, or None for all 62 classes.
      refused(str): a custom set that `parse_charset` could not read; the message says why.
    """

    chosen = Signal(object)
    refused = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        for text, spec in CHARSET_CHOICES:
            self.addItem(text, spec)
        self.addItem("Custom...", CUSTOM)
        self.setToolTip("Answer only from these characters (probabilities renormalised)")
        self.spec: str | None = None
        self.activated.connect(self._on_activated)

    def set_spec(self, spec: str | None) -> None:
        """Selects `spec` (a custom one gets its own entry) and emits `chosen`.

        Raises:
          CharjaxError: if `parse_charset` cannot read it; the selection stays as it was.
        """
        if spec is not None:
            parse_charset(spec)
        index = self.findData(spec or "")
        if index < 0:  # one entry for the custom set, just above "Custom..."
            custom = self.count() - 2
            if self.itemData(custom) not in dict(CHARSET_CHOICES).values():
                self.removeItem(custom)
            self.insertItem(self.count() - 1, spec, spec)
            index = self.findData(spec)
        self.setCurrentIndex(index)
        self.spec = spec or None
        self.chosen.emit(self.spec)

    def _on_activated(self, index: int) -> None:
        spec = self.itemData(index) or None
        if spec == CUSTOM:
            spec, ok = QInputDialog.getText(
                self, "Custom character set", "Characters and ranges, e.g. 0-9A-F:",
                text=self.spec or "",
            )  # fmt: skip
            if not ok:
                self.setCurrentIndex(self.findData(self.spec or ""))
                return
        try:
            self.set_spec(spec)
        except CharjaxError as e:
            self.setCurrentIndex(self.findData(self.spec or ""))
            self.refused.emit(str(e))
