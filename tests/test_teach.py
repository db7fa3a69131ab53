"""Teach mode end to end, offscreen: draw two characters three times each in the real dialog,
Learn (a real `charjax train --init-from` in another process, a few steps), see the window
switch to the personal model and the before/after accuracy, reopen it at the next start,
go back to the bundled model; and Cancel a Learn."""

import time

import pytest
from PySide6.QtCore import QPointF

from charjax.apps import teach
from charjax.apps.gui import MainWindow
from charjax.apps.teach import open_teach_dialog, personal_model, use_bundled_model

# Two characters the canvas can draw: strokes in canvas pixels (the dialog's canvas is 280).
STROKES = {
    "L": [[(90, 40), (90, 240), (200, 240)]],
    "T": [[(60, 50), (220, 50)], [(140, 50), (140, 240)]],
}
FAST = ("--steps", "3", "--batch-size", "62", "--augment", "0")


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """The user's data folder (Qt's AppDataLocation follows $XDG_DATA_HOME on Linux)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert teach.user_data_dir() == tmp_path / "share" / "charjax"
    return tmp_path / "share" / "charjax"


def wait_until(app, condition, timeout=240.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the GUI"
        app.processEvents()
        time.sleep(0.01)


def draw(canvas, strokes):
    for stroke in strokes:
        canvas.begin_stroke(QPointF(*stroke[0]))
        for point in stroke[1:]:
            canvas.extend_stroke(QPointF(*point))
        canvas.end_stroke()


@pytest.fixture
def window(app, tiny_run, tmp_path, data_home):
    win = MainWindow(checkpoint=tiny_run, samples_dir=tmp_path / "samples", bundled=False)
    win.show()
    wait_until(app, lambda: win.service.is_ready)
    yield win
    win.close()


def _teach_two(app, window, tiny_run, glyph_cache):
    # Datasets the run prepares go beside the samples, not into the test run's cache.
    extra = (*FAST, "--data-dir", str(teach.user_data_dir() / "cache"))
    dialog = open_teach_dialog(window, base=tiny_run, replay=str(glyph_cache), extra=extra)
    dialog.per_char.setValue(3)
    dialog.start("LT")
    assert dialog.prompt.text().startswith("Draw  L") and not dialog.learn_button.isEnabled()
    for i in range(6):
        char = dialog.queue[0]
        assert f"({i + 1} of 6)" in dialog.prompt.text()
        draw(dialog.canvas, STROKES[char])
        dialog.next_button.click()
        assert dialog.samples_bar.value() == i + 1
    assert dialog.prompt.text().startswith("All drawn") and dialog.learn_button.isEnabled()
    return dialog


def test_teach_learn_switch_reopen_and_revert(app, window, tiny_run, glyph_cache, data_home):
    dialog = _teach_two(app, window, tiny_run, glyph_cache)
    assert len(list((data_home / "samples").rglob("*.png"))) == 6
    dialog.learn_button.click()
    assert dialog.learner.running() and not dialog.learn_button.isEnabled()
    wait_until(app, lambda: dialog.run is not None or "Not learned" in dialog.result.text())
    assert dialog.run is not None, dialog.result.text()
    assert dialog.run.parent == data_home / "models"
    assert dialog.learn_bar.value() == dialog.learn_bar.maximum() == 3
    wait_until(app, lambda: window.current_model == str(dialog.run))
    assert str(dialog.run) in window.model_label.text()
    wait_until(app, lambda: dialog.before_after is not None)
    before, after = dialog.before_after
    assert before[1] == after[1] == 2  # one of each character held back
    assert "held-back drawings" in dialog.result.text()

    # The next start reopens the personal model.
    assert personal_model() == dialog.run
    again = MainWindow(samples_dir=data_home / "s2")
    try:
        wait_until(app, lambda: again.current_model is not None)
        assert again.current_model == str(dialog.run)
    finally:
        again.close()

    use_bundled_model(window, bundled=tiny_run)
    wait_until(app, lambda: window.current_model == str(tiny_run))
    assert personal_model() is None


def test_cancel_stops_learning_and_removes_the_run(app, window, tiny_run, glyph_cache):
    # (data_home comes with `window`: nothing here touches the user's real data folder.)
    dialog = _teach_two(app, window, tiny_run, glyph_cache)
    dialog.learn_button.click()
    workdir = dialog.learner.workdir
    dialog.cancel_button.click()
    assert not dialog.learner.running() and not workdir.exists()
    assert dialog.result.text() == "Not learned: cancelled"
    assert dialog.isVisible() and dialog.learn_button.isEnabled()
    assert personal_model() is None and window.current_model == str(tiny_run)


def test_progress_skips_a_metrics_line_caught_mid_write(app, tmp_path):
    """A line read while the run is still appending it waits for the next poll; no error."""
    learner = teach.Learner()
    learner.workdir = tmp_path
    (tmp_path / "config.json").write_text('{"total_steps": 10}')
    (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n{"st')
    seen = []
    learner.progress.connect(lambda step, total: seen.append((step, total)))
    learner._poll()
    assert seen == []
    (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n{"step": 4}\n')
    learner._poll()
    assert seen == [(4, 10)]
