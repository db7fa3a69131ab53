"""Teach mode: the window learns your handwriting (issue 15).

*Teach > Teach my handwriting...* opens a `TeachDialog`. It asks for characters one at a time
(all 62, digits, letters, or the ones the current model gets wrong), N drawings each, with
progress, saving every drawing in the Chars74K folder layout under the user's data folder
(Qt's AppDataLocation: ~/.local/share/charjax on Linux, ~/Library/Application Support/charjax
on macOS, %APPDATA%/charjax on Windows). *Learn* then runs the real command in another process

    charjax train --init-from BASE --data folder:SAMPLES[:0.5+REPLAY:0.5] --workdir MODELS/NAME

(`QProcess`, so the window stays responsive; its progress is read from the run's
metrics.jsonl, and *Cancel* stops it and removes the half-made run), switches the window to
the new personal model, and shows the accuracy of the old and the new model on your
held-back drawings (one of every character you drew >= 3 times, never trained on). The
personal model is remembered (personal.json in the same folder) and reopened at the next
start; *Teach > Use bundled model* forgets it and goes back.
"""

import json
import shutil
import string
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QProcess, QStandardPaths, QTimer, Signal
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from charjax.apps.canvas import Canvas
from charjax.apps.files import bundled_model, save_sample
from charjax.atomic import write_json_atomic
from charjax.data.folder import load_folder_images
from charjax.data.sources import folder_cache
from charjax.errors import CharjaxError
from charjax.evaluate import accuracy_report
from charjax.finetune import FINETUNE
from charjax.labels import CLASSES
from charjax.predict import Predictor

APP_NAME = "charjax"
CHOICES = {
    "all 62 characters": CLASSES,
    "digits": string.digits,
    "letters": string.ascii_letters,
    "the ones the model gets wrong": None,
}


def user_data_dir() -> Path:
    """The platform's per-user data folder for charjax (Qt's AppDataLocation)."""
    if QCoreApplication.applicationName() != APP_NAME:
        QCoreApplication.setApplicationName(APP_NAME)  # the folder is named after the app
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def _record() -> Path:
    return user_data_dir() / "personal.json"


def personal_model() -> Path | None:
    """The personal model the window should reopen, if one is remembered and still there."""
    try:
        path = Path(json.loads(_record().read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if (path / "best").is_dir() or (path / "checkpoints").is_dir() else None


def remember(run: Path | None) -> None:
    """Makes `run` the model reopened at the next start (None: the bundled model)."""
    user_data_dir().mkdir(parents=True, exist_ok=True)
    write_json_atomic(_record(), {"model": None if run is None else str(run)})


def held_back_accuracy(run, samples: Path, data_dir: Path) -> tuple[float, int] | None:
    """(case-insensitive accuracy, count) of `run` on the held-back drawings, or None."""
    predictor = Predictor.load(run)
    cache = folder_cache(str(samples), predictor.image_size, str(data_dir), progress=False)
    val = cache.arrays("val")
    if not len(val["label"]):
        return None
    report = accuracy_report(predictor.probabilities(val["image"]), val["label"])
    return report["top1_case_insensitive"], len(val["label"])


def misread_chars(run, samples: Path) -> str:
    """The characters whose saved drawings `run` reads wrong (all of them without drawings)."""
    if not samples.is_dir() or not any(samples.rglob("*.png")):
        return CLASSES
    predictor = Predictor.load(run)
    try:
        images, labels, _ = load_folder_images(samples, predictor.spec)
    except CharjaxError:
        return CLASSES
    wrong = predictor.probabilities(images).argmax(1) != labels
    return "".join(CLASSES[i] for i in sorted(set(labels[wrong].tolist()))) or CLASSES


class Learner(QObject):
    """Runs `charjax train --init-from` in another process and reports its progress.

    Signals:
      progress(int, int): step reached, total steps.
      finished(str): the run directory, once it is complete.
      failed(str): what went wrong (the process's last error line); also after `cancel`.
    """

    progress = Signal(int, int)
    finished = Signal(str)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.workdir: Path | None = None
        self._timer = QTimer(self, interval=250)
        self._timer.timeout.connect(self._poll)

    def start(self, base: str, data: str, workdir: Path, extra=()) -> None:
        self.workdir = workdir
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.finished.connect(self._on_finished)
        args = ["-m", "charjax.cli.main", "train", "--init-from", base, "--data", data]
        args += ["--workdir", str(workdir), "--no-progress", *extra]
        self.process.start(sys.executable, args)
        self._timer.start()

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def _poll(self) -> None:
        # Not written yet, or read while the run appends a line: the next poll sees it whole.
        try:
            total = json.loads((self.workdir / "config.json").read_text())["total_steps"]
            lines = (self.workdir / "metrics.jsonl").read_text().splitlines()
            steps = [json.loads(line).get("step", 0) for line in lines if line.strip()]
        except (OSError, ValueError, KeyError, TypeError):
            return
        self.progress.emit(int(max(steps, default=0)), int(total))

    def cancel(self) -> None:
        """Stops the process and removes its half-made run."""
        if self.running():
            self.process.finished.disconnect(self._on_finished)
            self.process.kill()
            self.process.waitForFinished(5000)
        self._timer.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.failed.emit("cancelled")

    def _on_finished(self, code: int, _status) -> None:
        self._timer.stop()
        output = bytes(self.process.readAll()).decode(errors="replace").strip().splitlines()
        if code == 0:
            self._poll()
            self.finished.emit(str(self.workdir))
        else:
            errors = [line for line in output if line.startswith("charjax: error:")]
            self.failed.emit((errors or output or [f"exit code {code}"])[-1])


class TeachDialog(QDialog):
    """Asks for characters one at a time, then fine-tunes on them (see the module docstring).

    Args:
      window: the MainWindow whose model is taught and then switched.
      base: the model to fine-tune from (default: the bundled model).
      replay: the `--data` replay mixed in (default: `FINETUNE.replay`).
      extra: more `charjax train` options (tests: a few steps).
    """

    evaluated = Signal(object, object)  # (before, after) held-back accuracies, from a thread

    def __init__(self, window, base=None, replay: str | None = None, extra=()):
        super().__init__(window)
        self.setWindowTitle("charjax - teach my handwriting")
        self.window_ = window
        self.base = str(base or bundled_model())
        self.replay = replay or FINETUNE.replay
        self.extra = tuple(extra)
        self.samples = user_data_dir() / "samples"
        self.queue: list[str] = []
        self.done = 0
        self.run: Path | None = None
        self.before_after: tuple | None = None  # held-back accuracies, once measured
        self.learner = Learner(self)
        self.learner.progress.connect(self._on_progress)
        self.learner.finished.connect(self._on_learned)
        self.learner.failed.connect(self._on_failed)
        self.evaluated.connect(self._on_evaluated)
        self._build()

    def _build(self) -> None:
        self.choice = QComboBox()
        self.choice.addItems(list(CHOICES))
        self.per_char = QSpinBox(minimum=1, maximum=20, value=3)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(lambda: self.start())
        self.prompt = QLabel("Choose the characters, then Start.")
        self.prompt.setFont(QFont(self.prompt.font().family(), 18))
        self.canvas = Canvas(size=280)
        self.samples_bar = QProgressBar(format="%v of %m drawn")
        self.next_button = QPushButton("Next (Enter)")
        self.next_button.setShortcut("Return")
        self.next_button.clicked.connect(self.accept_drawing)
        self.learn_button = QPushButton("Learn")
        self.learn_button.clicked.connect(self.learn)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.learn_bar = QProgressBar(format="Learn: step %v of %m")
        self.result = QLabel(wordWrap=True)
        top = QHBoxLayout()
        for w in (QLabel("Teach"), self.choice, QLabel("drawings of each"), self.per_char):
            top.addWidget(w)
        top.addWidget(self.start_button)
        buttons = QHBoxLayout()
        for w in (self.next_button, self.learn_button, self.cancel_button):
            buttons.addWidget(w)
        layout = QVBoxLayout(self)
        for w in (self.prompt, self.canvas, self.samples_bar):
            layout.addWidget(w)
        layout.insertLayout(0, top)
        layout.addLayout(buttons)
        layout.addWidget(self.learn_bar)
        layout.addWidget(self.result)
        self._update()

    def start(self, chars: str | None = None) -> None:
        """Queues `chars` (default: the chosen set) N times each and asks for the first."""
        if chars is None:
            chars = CHOICES[self.choice.currentText()]
            if chars is None:
                current = getattr(self.window_, "current_model", None) or self.base
                chars = misread_chars(current, self.samples)
        self.queue = [c for c in chars for _ in range(self.per_char.value())]
        self.done = 0
        self.canvas.clear()
        self._update()

    def accept_drawing(self) -> None:
        """Saves the drawing as the asked character and asks for the next one."""
        if not self.queue or self.canvas.is_empty():
            return
        save_sample(self.canvas, self.samples, self.queue.pop(0))
        self.done += 1
        self.canvas.clear()
        self._update()

    def _update(self) -> None:
        total = self.done + len(self.queue)
        self.samples_bar.setRange(0, max(total, 1))
        self.samples_bar.setValue(self.done)
        if self.queue:
            char = self.queue[0]
            self.prompt.setText(f"Draw  {char}   ({self.done + 1} of {total})")
        elif total:
            self.prompt.setText("All drawn. Learn makes a model of your handwriting.")
        self.next_button.setEnabled(bool(self.queue))
        drawn = self.samples.is_dir() and any(self.samples.rglob("*.png"))
        self.learn_button.setEnabled(bool(drawn) and not self.learner.running())

    def learn(self) -> None:
        """Fine-tunes the base model on every drawing saved so far, in another process."""
        workdir = user_data_dir() / "models" / time.strftime("%Y%m%d-%H%M%S")
        data = f"folder:{self.samples}"
        if self.replay:
            w = FINETUNE.replay_weight
            data += f":{1 - w:g}+{self.replay}:{w:g}"
        self.result.setText("Learning...")
        self.learner.start(self.base, data, workdir, self.extra)
        self._update()

    def cancel(self) -> None:
        """Stops a running Learn; otherwise closes the dialog."""
        if self.learner.running():
            self.learner.cancel()
        else:
            self.reject()

    def _on_progress(self, step: int, total: int) -> None:
        self.learn_bar.setRange(0, max(total, 1))
        self.learn_bar.setValue(step)

    def _on_failed(self, message: str) -> None:
        self.result.setText(f"Not learned: {message}")
        self._update()

    def _on_learned(self, run: str) -> None:
        self.run = Path(run)
        remember(self.run)
        self.window_.open_checkpoint(self.run)
        self.result.setText("Learned; measuring it on your held-back drawings...")
        self._update()
        # Loading two models and predicting takes seconds: off the UI thread.
        threading.Thread(target=self._evaluate, args=(self.run,), daemon=True).start()

    def _evaluate(self, run: Path) -> None:
        data_dir = user_data_dir() / "cache"
        try:
            before = held_back_accuracy(self.base, self.samples, data_dir)
            after = held_back_accuracy(run, self.samples, data_dir)
        except CharjaxError as e:
            before, after = str(e), None
        self.evaluated.emit(before, after)

    def _on_evaluated(self, before, after) -> None:
        if isinstance(before, str):
            self.result.setText(f"Learned; could not measure it: {before}")
        elif before is None:
            self.result.setText(
                "Learned and in use. (Draw a character 3 times or more to hold one back and "
                "see the accuracy before and after.)"
            )
        else:
            self.result.setText(
                f"Learned and in use. On your {before[1]} held-back drawings: "
                f"{before[0]:.0%} before, {after[0]:.0%} after."
            )
        self.before_after = (before, after)


def add_teach_menu(window) -> None:
    """Adds the Teach menu to a MainWindow and remembers which model it shows."""
    window.current_model = None
    window.service.ready.connect(lambda source, _spec: setattr(window, "current_model", source))
    menu = window.menuBar().addMenu("&Teach")
    teach = QAction("&Teach my handwriting...", window)
    teach.triggered.connect(lambda: open_teach_dialog(window))
    bundled = QAction("Use &bundled model", window)
    bundled.triggered.connect(lambda: use_bundled_model(window))
    bundled.setEnabled(bundled_model() is not None)
    menu.addAction(teach)
    menu.addAction(bundled)


def open_teach_dialog(window, **kw) -> TeachDialog:
    dialog = TeachDialog(window, **kw)
    dialog.show()
    return dialog


def use_bundled_model(window, bundled=None) -> None:
    """Forgets the personal model and switches the window back to the bundled one."""
    remember(None)
    if (path := bundled or bundled_model()) is not None:
        window.open_checkpoint(path)
