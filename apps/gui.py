"""`charjax-gui`: draw a character, see what a trained model reads.

    charjax-gui                          # the newest run under ./runs
    charjax-gui --checkpoint runs/demo   # a given run (or File > Open checkpoint)
    charjax-gui --charset digits         # answers only from a character set (or the menu)
    charjax-gui --line                   # write a word or a line and see it read

The window only draws and displays; the model runs in `worker.PredictionService` (off the UI
thread) through `charjax.predict`, the same path `charjax predict` takes for an image file.
"""

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
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

from charjax.apps.canvas import Canvas, call_while_drawing
from charjax.apps.display import display_problem
from charjax.apps.files import bundled_model, newest_run, save_sample
from charjax.apps.line import LineWindow
from charjax.apps.panels import (
    Banner,
    CharsetChooser,
    ImagePanel,
    PredictionList,
    lookalike_note,
)
from charjax.apps.teach import add_teach_menu, personal_model
from charjax.apps.worker import PredictionService, Result
from charjax.errors import CharjaxError
from charjax.labels import CHARSET_NAMES, CLASSES, parse_charset
from charjax.preprocess import NO_INK

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


def choose_checkpoint(checkpoint=None, runs_dir="runs", bundled=True):
    """The model to open: the one asked for, else the user's personal model (teach mode), else
    the bundled one (right after install it is the one to use), else the newest run."""
    default = (personal_model() or bundled_model()) if bundled else None
    return checkpoint or default or newest_run(runs_dir)


class MainWindow(QMainWindow):
    """The canvas on the left; what the model sees and says on the right."""

    def __init__(
        self,
        checkpoint=None,
        generator=None,
        samples_dir=None,
        runs_dir="runs",
        bundled=True,
        charset: str | None = None,
    ):
        super().__init__()
        self.setWindowTitle("charjax - draw a character")
        self.samples_dir = Path(samples_dir or DEFAULT_SAMPLES_DIR)
        self.last_result: Result | None = None
        self.results_shown = 0  # counts displayed results (tests wait on it)
        self._height_without_banner = 0

        self.canvas = Canvas()
        self.preview = ImagePanel("What the model sees")
        self.predictions = PredictionList()
        self.predictions.setMinimumWidth(340)
        self.note = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.timing = QLabel(wordWrap=True)
        self.banner = Banner()
        self.reconstruction = ImagePanel("Generator's reconstruction")
        self.reconstruction.setVisible(generator is not None)
        self.charset = CharsetChooser()
        # Which model is in use stays in the corner; showMessage is for what just happened,
        # and is cleared when the drawing changes so it never describes an older one.
        self.model_label = QLabel("no model")
        self.model_source = ""  # the model in use, once one is ready
        self.statusBar().addPermanentWidget(self.model_label)
        self._build_layout()
        self._build_menus()

        # "Draw a character first" and the like are stale once the drawing changes.
        self.canvas.changed.connect(self.statusBar().clearMessage)
        call_while_drawing(self.canvas, THROTTLE_MS, self.request_prediction)

        self.service = PredictionService(self)
        self.service.ready.connect(self._on_ready)
        self.service.failed.connect(self._on_failed)
        self.service.generator_failed.connect(self.reconstruction.show_message)
        self.service.result.connect(self._on_result)
        add_teach_menu(self)  # Teach > Teach my handwriting..., Use bundled model
        self.charset.chosen.connect(self._on_charset)
        self.charset.refused.connect(self.statusBar().showMessage)
        if charset is not None:
            self.charset.set_spec(charset)
        self._show_blank()
        checkpoint = choose_checkpoint(checkpoint, runs_dir, bundled)
        self.line_windows: list[LineWindow] = []
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
        # Empty is acceptable, so Enter on an empty box reaches save_current_sample and is
        # told what to type (an unacceptable text swallows Enter silently).
        self.label_edit.setValidator(QRegularExpressionValidator("[0-9A-Za-z]?"))
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
        top_row = QHBoxLayout()
        top_row.addWidget(QLabel("<b>Top 5</b> from"))
        top_row.addWidget(self.charset)
        top_row.addStretch(1)
        right.addLayout(top_row)
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
        view_menu = self.menuBar().addMenu("&View")
        action(view_menu, "Write a &line...", self.open_line_window, "Ctrl+L")

    def open_line_window(self) -> LineWindow | None:
        """A wide canvas that reads a word or a line, with the model and charset of this one."""
        if not self.service.is_ready:
            self.statusBar().showMessage("open a model first")
            return None
        window = LineWindow(self.model_source, self.charset.spec)
        self.line_windows.append(window)  # kept alive beside this window
        window.show()
        return window

    # --- model ----------------------------------------------------------------------------

    def open_checkpoint(self, path) -> None:
        """Loads a classifier run in the background; predictions resume once it is compiled."""
        self._show_problem(f"Loading and compiling <tt>{path}</tt> ...", "loading the model")
        self.model_label.setText(f"loading {path}")
        self.service.load(str(path))

    def _ask_checkpoint(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a run or checkpoint directory", "runs")
        if path:
            self.open_checkpoint(path)

    def _on_ready(self, source: str, spec) -> None:
        self._hide_banner()
        self.preview.set_title(f"What the model sees ({spec.size}x{spec.size})")
        self.model_label.setText(f"model: {source}")
        self.model_source = source
        self.request_prediction()

    def _on_failed(self, message: str, kept: str) -> None:
        problem = f"<b>Cannot use this model.</b><br>{message}<br><br>"
        if kept:  # the worker kept the model that was working
            self.banner.setText(f"{problem}Still using <tt>{kept}</tt>.")
            self.model_label.setText(f"model: {kept}")
            self.request_prediction()
            return
        bundled = bundled_model()
        if bundled is not None:
            problem += (
                f"The model bundled with charjax is always there: <i>Teach &rsaquo; Use "
                f"bundled model</i> (<tt>{bundled}</tt>).<br><br>"
            )
        self._show_problem(problem + HOW_TO_TRAIN)
        self.model_label.setText("no model")

    def _show_problem(self, html: str, status: str = "no model") -> None:
        if self.banner.isHidden():
            self._height_without_banner = self.height() if self.isVisible() else 0
        self.banner.setText(html)
        self.banner.show()
        self.predictions.show_message(status)

    def _hide_banner(self) -> None:
        self.banner.hide()
        # The layout let the window grow for the banner but never shrinks a window by itself;
        # give back the height the banner took (a taller window the user chose stays).
        if self.isVisible() and not (self.isMaximized() or self.isFullScreen()):
            self.centralWidget().layout().activate()  # the minimum size without it, now
            self.layout().activate()
            height = max(self._height_without_banner, self.minimumSizeHint().height())
            self.resize(self.width(), height)

    # --- drawing -> prediction ------------------------------------------------------------

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
        if result.prediction.blank:  # a click or a speck: say so rather than guess
            self.predictions.show_message(NO_INK)
        else:
            self.predictions.show_prediction(result.prediction)
        self.note.setText(lookalike_note(result.prediction))
        self.timing.setText(
            f"predicted in {result.predict_ms:.1f} ms (on screen after {result.latency_ms:.0f} ms)"
        )
        if result.reconstruction is not None:
            self.reconstruction.show_array(result.reconstruction)
        elif result.prediction.blank:
            self.reconstruction.show_message("")
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
        self.canvas.clear()  # before the message: a change of drawing clears messages
        self.statusBar().showMessage(f"saved {path} ({count} of {label!r})")
        # Back to drawing: Ctrl+Z should undo a stroke, not the label's text.
        self.canvas.setFocus()
        return path

    # --- character set --------------------------------------------------------------------

    def set_charset(self, spec: str | None) -> None:
        """Answers only from `spec` (`charjax.labels.parse_charset`), None for all 62 classes.

        Raises CharjaxError for a set `parse_charset` cannot read (nothing changes then).
        """
        self.charset.set_spec(spec)

    def _on_charset(self, spec: str | None) -> None:
        self.service.allowed = None if spec is None else parse_charset(spec)
        self.request_prediction()

    def _ask_samples_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Save samples into", str(self.samples_dir))
        if path:
            self.samples_dir = Path(path)
            self.statusBar().showMessage(f"samples go to {path}")

    def closeEvent(self, event) -> None:
        self.service.close()
        super().closeEvent(event)


def _charset_arg(value: str) -> str:
    try:
        parse_charset(value)
    except CharjaxError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


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
        "--charset",
        type=_charset_arg,
        metavar="SET",
        help=f"answer only from {CHARSET_NAMES} (also a menu above the top 5)",
    )
    parser.add_argument(
        "--line",
        action="store_true",
        help="write a word or a line on a wide canvas and see it read (also View > Write a line)",
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
    if QApplication.instance() is None and (problem := display_problem()):
        # Qt would abort the process with a message that does not say what to install.
        print(f"charjax-gui: error: {problem}", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if args.line:
        checkpoint = choose_checkpoint(args.checkpoint)
        if checkpoint is None:
            print("charjax-gui: error: no model to read with: give --checkpoint", file=sys.stderr)
            return 1
        window = LineWindow(checkpoint, args.charset)
    else:
        window = MainWindow(args.checkpoint, args.generator, args.samples_dir, charset=args.charset)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
