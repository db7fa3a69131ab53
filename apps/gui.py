"""`charjax-gui`: draw a character, see what a trained model reads.

    charjax-gui                          # the newest run under ./runs
    charjax-gui --checkpoint runs/demo   # a given run (or File > Open checkpoint)

The window only draws and displays; the model runs in `worker.PredictionService` (off the UI
thread) through `charjax.predict`, the same path `charjax predict` takes for an image file.
"""

import argparse
import re
import sys
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from charjax.apps.canvas import Canvas
from charjax.apps.panels import ImagePanel, PredictionList, lookalike_note
from charjax.apps.worker import PredictionService, Result
from charjax.errors import CharjaxError
from charjax.labels import CLASSES, char_to_index, sample_dir_name
from charjax.predict import default_checkpoint

# While the pen moves, predict at most this often; a finished stroke is predicted at once.
THROTTLE_MS = 100
DEFAULT_SAMPLES_DIR = "my_samples"
HOW_TO_TRAIN = (
    "<b>No trained model found</b> (looked for a run with a checkpoint under <tt>./runs</tt>)."
    "<br><br>Train one, then restart <tt>charjax-gui</tt> or use <i>File &rsaquo; Open "
    "checkpoint</i>:<br><tt>&nbsp;&nbsp;charjax train --arch resnet-small --workdir "
    "runs/NAME</tt><br>or, from a source checkout (about 10 minutes on a laptop CPU):"
    "<br><tt>&nbsp;&nbsp;make demo</tt>"
)


def bundled_model() -> Path | None:
    """The default model shipped with charjax, or None in an installation without one."""
    try:
        return default_checkpoint()
    except CharjaxError:
        return None


def newest_run(runs_dir="runs") -> Path | None:
    """The most recently written run under `runs_dir` that has a checkpoint, if any.

    A run is a directory holding `best/` or `checkpoints/` (what `charjax train` writes).
    """
    root = Path(runs_dir)
    if not root.is_dir():
        return None
    candidates = []
    for run in root.iterdir():
        saved = [run / "best", run / "checkpoints"]
        times = [d.stat().st_mtime for d in saved if d.is_dir()]
        if times:
            candidates.append((max(times), run))
    return max(candidates)[1] if candidates else None


def save_sample(canvas: Canvas, samples_dir, label: str) -> Path:
    """Writes the drawing as `DIR/SampleNNN/imgNNN-KKKKK.png`, the Chars74K folder layout.

    `charjax eval --data folder:DIR` and `charjax data folder DIR` read it back. K is one
    more than the highest number already in the class folder, so nothing is overwritten.

    Returns:
      the path written. Raises ValueError if `label` is not one of the 62 characters.
    """
    index = char_to_index(label)
    folder = Path(samples_dir) / sample_dir_name(index)
    folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"img{index + 1:03d}-(\d+)\.png")
    taken = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    path = folder / f"img{index + 1:03d}-{max(taken, default=0) + 1:05d}.png"
    canvas.save_png(path)
    return path


class MainWindow(QMainWindow):
    """The canvas on the left; what the model sees and says on the right."""

    def __init__(
        self, checkpoint=None, generator=None, samples_dir=None, runs_dir="runs", bundled=True
    ):
        super().__init__()
        self.setWindowTitle("charjax - draw a character")
        self.samples_dir = Path(samples_dir or DEFAULT_SAMPLES_DIR)
        self.last_result: Result | None = None
        self.results_shown = 0  # counts displayed results (tests wait on it)

        self.canvas = Canvas()
        self.preview = ImagePanel("What the model sees")
        self.predictions = PredictionList()
        self.predictions.setMinimumWidth(340)
        self.note = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.timing = QLabel(wordWrap=True)
        self.banner = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setStyleSheet("padding: 8px; background: #FFF8E1;")
        self.reconstruction = ImagePanel("Generator's reconstruction")
        self.reconstruction.setVisible(generator is not None)
        self._build_layout()
        self._build_menus()

        self._throttle = QTimer(self, singleShot=True, interval=THROTTLE_MS)
        self._throttle.timeout.connect(self.request_prediction)
        self.canvas.changed.connect(self._on_drawing_changed)

        self.service = PredictionService(self)
        self.service.ready.connect(self._on_ready)
        self.service.failed.connect(self._on_failed)
        self.service.generator_failed.connect(self.reconstruction.show_message)
        self.service.result.connect(self._on_result)
        self._show_blank()
        # The bundled model first: right after install it is the one to use; a user's own run
        # is chosen explicitly (--checkpoint or File > Open).
        checkpoint = checkpoint or (bundled_model() if bundled else None) or newest_run(runs_dir)
        if checkpoint is None:
            self._show_problem(HOW_TO_TRAIN)
        else:
            self.open_checkpoint(checkpoint)
        if generator is not None:
            self.service.load_generator(str(generator))

    # --- layout ---------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.width_slider = QSlider(Qt.Orientation.Horizontal, minimum=1, maximum=60)
        self.width_slider.setValue(int(self.canvas.pen_width))
        width_label = QLabel()
        self.width_slider.valueChanged.connect(self.canvas.set_pen_width)
        self.width_slider.valueChanged.connect(lambda v: width_label.setText(f"Pen {v} px"))
        width_label.setText(f"Pen {self.width_slider.value()} px")
        buttons = QHBoxLayout()
        for text, slot in (
            ("Undo", self.canvas.undo),
            ("Clear", self.canvas.clear),
            ("Invert", self.canvas.invert),
        ):
            button = QPushButton(text)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep Esc / Ctrl+Z for the window
            button.clicked.connect(slot)
            buttons.addWidget(button)
        pen_row = QHBoxLayout()
        pen_row.addWidget(width_label)
        pen_row.addWidget(self.width_slider, 1)
        left = QVBoxLayout()
        left.addWidget(self.canvas)
        left.addLayout(pen_row)
        left.addLayout(buttons)
        left.addStretch(1)

        self.label_edit = QLineEdit(maxLength=1, placeholderText="char")
        self.label_edit.setValidator(QRegularExpressionValidator("[0-9A-Za-z]"))
        self.label_edit.setFixedWidth(56)
        self.label_edit.returnPressed.connect(self.save_current_sample)
        save_button = QPushButton("Save as sample")
        save_button.clicked.connect(self.save_current_sample)
        save_row = QHBoxLayout()
        save_row.addWidget(QLabel("Label"))
        save_row.addWidget(self.label_edit)
        save_row.addWidget(save_button, 1)

        images = QGridLayout()
        images.addWidget(self.preview, 0, 0)
        images.addWidget(self.reconstruction, 0, 1)
        images.setColumnStretch(2, 1)
        right = QVBoxLayout()
        right.addWidget(self.banner)
        right.addLayout(images)
        right.addWidget(QLabel("<b>Top 5</b>"))
        right.addWidget(self.predictions)
        right.addWidget(self.note)
        right.addWidget(self.timing)
        right.addStretch(1)
        right.addLayout(save_row)

        body = QHBoxLayout()
        body.addLayout(left)
        body.addLayout(right, 1)
        central = QWidget()
        central.setLayout(body)
        self.setCentralWidget(central)

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None):
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        file_menu = self.menuBar().addMenu("&File")
        action(
            file_menu, "&Open checkpoint...", self._ask_checkpoint, QKeySequence.StandardKey.Open
        )
        action(file_menu, "Samples &folder...", self._ask_samples_dir)
        action(file_menu, "&Save as sample", self.save_current_sample, "Ctrl+S")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit_menu = self.menuBar().addMenu("&Edit")
        action(edit_menu, "&Undo stroke", self.canvas.undo, QKeySequence.StandardKey.Undo)
        action(edit_menu, "&Clear", self.canvas.clear, "Esc")
        action(edit_menu, "&Invert colours", self.canvas.invert, "Ctrl+I")

    # --- model ----------------------------------------------------------------------------

    def open_checkpoint(self, path) -> None:
        """Loads a classifier run in the background; predictions resume once it is compiled."""
        self._show_problem(f"Loading and compiling <tt>{path}</tt> ...", "loading the model")
        self.statusBar().showMessage(f"loading {path}")
        self.service.load(str(path))

    def _ask_checkpoint(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a run or checkpoint directory", "runs")
        if path:
            self.open_checkpoint(path)

    def _on_ready(self, source: str, spec) -> None:
        self.banner.hide()
        self.preview.set_title(f"What the model sees ({spec.size}x{spec.size})")
        self.statusBar().showMessage(f"model: {source}")
        self.request_prediction()

    def _on_failed(self, message: str) -> None:
        self._show_problem(f"<b>Cannot use this model.</b><br>{message}<br><br>{HOW_TO_TRAIN}")
        self.statusBar().showMessage("no model")

    def _show_problem(self, html: str, status: str = "no model") -> None:
        self.banner.setText(html)
        self.banner.show()
        self.predictions.show_message(status)

    # --- drawing -> prediction ------------------------------------------------------------

    def _on_drawing_changed(self, finished: bool) -> None:
        if finished:
            self._throttle.stop()
            self.request_prediction()
        elif not self._throttle.isActive():
            self._throttle.start()

    def request_prediction(self) -> None:
        """Sends the canvas as it is now to the worker (or shows the blank state)."""
        if self.canvas.is_empty():
            self.service.discard_pending()
            self._show_blank()
            return
        self.service.submit(self.canvas.to_array())

    def _show_blank(self) -> None:
        self.last_result = None
        self.preview.show_message("")
        self.reconstruction.show_message("")
        self.note.clear()
        self.timing.clear()
        if self.service.is_ready:
            self.predictions.show_message("Draw a character")

    def _on_result(self, result: Result) -> None:
        if self.canvas.is_empty():
            return  # cleared while this drawing was being predicted
        self.last_result = result
        self.preview.show_array(result.preview)
        self.predictions.show_prediction(result.prediction)
        self.note.setText(lookalike_note(result.prediction))
        self.timing.setText(
            f"predicted in {result.predict_ms:.1f} ms (on screen after {result.latency_ms:.0f} ms)"
        )
        if result.reconstruction is not None:
            self.reconstruction.show_array(result.reconstruction)
        self.results_shown += 1

    # --- samples --------------------------------------------------------------------------

    def save_current_sample(self) -> Path | None:
        """Saves the drawing under the label typed next to the button, then clears it."""
        label = self.label_edit.text()
        if self.canvas.is_empty():
            self.statusBar().showMessage("draw a character first")
            return None
        if len(label) != 1 or label not in CLASSES:
            self.statusBar().showMessage("type the character you drew (0-9, A-Z, a-z) first")
            self.label_edit.setFocus()
            return None
        path = save_sample(self.canvas, self.samples_dir, label)
        count = sum(1 for _ in path.parent.glob("*.png"))
        self.statusBar().showMessage(f"saved {path} ({count} of {label!r})")
        self.canvas.clear()
        return path

    def _ask_samples_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Save samples into", str(self.samples_dir))
        if path:
            self.samples_dir = Path(path)
            self.statusBar().showMessage(f"samples go to {path}")

    def closeEvent(self, event) -> None:
        self.service.close()
        super().closeEvent(event)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="charjax-gui", description="Draw a character and see a trained model recognise it."
    )
    parser.add_argument(
        "--checkpoint",
        metavar="RUN",
        help="a run directory from `charjax train` (default: the bundled model, else the "
        "newest run under ./runs)",
    )
    parser.add_argument(
        "--generator", metavar="RUN", help="an autoencoder run; shows its reconstruction"
    )
    parser.add_argument(
        "--samples-dir",
        metavar="DIR",
        default=DEFAULT_SAMPLES_DIR,
        help="where 'Save as sample' writes (SampleNNN folders) [default: %(default)s]",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point of `charjax-gui`."""
    args = parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(args.checkpoint, args.generator, args.samples_dir)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
