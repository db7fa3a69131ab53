"""charjax-gui driven like a user would: simulated mouse strokes on the real main window,
offscreen: what is predicted, shown, undone and saved, and the character-set control."""

import json

import numpy as np
import pytest
from gui_support import LETTER_A, draw, draw_and_wait, wait_until
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QInputDialog

from charjax.apps import gui
from charjax.apps.files import save_sample
from charjax.apps.gui import MainWindow
from charjax.apps.panels import CUSTOM
from charjax.cli.main import main as charjax_cli
from charjax.preprocess import NO_INK, preprocess


def test_a_stroke_updates_the_top5_and_the_preview_is_the_shared_preprocessing(app, window):
    assert window.predictions.chars == ()
    result = draw_and_wait(app, window, LETTER_A)
    assert len(window.predictions.chars) == 5
    assert window.predictions.chars == result.prediction.chars
    spec = window.service._worker.predictor.spec
    expected = preprocess(window.canvas.to_array(), spec)
    np.testing.assert_array_equal(window.preview.array, expected)
    assert result.predict_ms > 0 and "ms" in window.timing.text()


def test_predictions_arrive_while_the_pen_is_still_down(app, window):
    draw(window.canvas, LETTER_A[0], release=False)
    wait_until(app, lambda: window.results_shown > 0, timeout=5)  # throttled, not at pen-up
    assert window.canvas._current is not None  # the stroke is still in progress


def test_gui_top1_equals_charjax_predict_on_the_saved_png(app, window, capsys, tmp_path):
    result = draw_and_wait(app, window, LETTER_A)
    png = tmp_path / "drawn.png"
    window.canvas.save_png(png)
    charjax_cli(
        [
            "predict",
            "--checkpoint",
            str(window.service._worker.predictor.source),
            "--json",
            "--top-k",
            "5",
            str(png),
        ]
    )
    cli = json.loads(capsys.readouterr().out)
    assert [t["char"] for t in cli["top"]] == list(result.prediction.chars)
    np.testing.assert_allclose([t["prob"] for t in cli["top"]], result.prediction.probs, rtol=1e-5)


def test_undo_clear_invert(app, window):
    canvas = window.canvas
    draw_and_wait(app, window, LETTER_A[:1])
    one_stroke = canvas.to_array()
    draw_and_wait(app, window, LETTER_A[1:])
    assert len(canvas.strokes) == 2
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(canvas.strokes) == 1
    np.testing.assert_array_equal(canvas.to_array(), one_stroke)  # redraw == live drawing

    canvas.invert()
    inverted = canvas.to_array()
    assert inverted[0, 0] == 0 and inverted.max() == 255
    assert np.abs(inverted.astype(int) + one_stroke - 255).max() <= 1
    # Auto polarity: white ink on black is the same character to the model.
    spec = window.service._worker.predictor.spec
    diff = preprocess(inverted, spec).astype(int) - preprocess(one_stroke, spec)
    assert np.abs(diff).max() <= 2
    canvas.invert()
    np.testing.assert_array_equal(canvas.to_array(), one_stroke)

    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert canvas.is_empty() and (canvas.to_array() == 255).all()
    wait_until(app, lambda: window.last_result is None)
    assert window.predictions.chars == () and window.preview.array is None


def test_save_as_sample_writes_the_folder_dataset_layout(app, window, tmp_path, capsys):
    samples = tmp_path / "samples"
    assert window.save_current_sample() is None  # nothing drawn, no label: nothing written
    for expected in ("img011-00001.png", "img011-00002.png"):
        draw_and_wait(app, window, LETTER_A)
        drawn = window.canvas.to_array()
        window.label_edit.setText("A")
        path = window.save_current_sample()
        assert path == samples / "Sample011" / expected
        assert window.canvas.is_empty()  # ready for the next sample
    np.testing.assert_array_equal(np.asarray(Image.open(path)), drawn)
    draw_and_wait(app, window, LETTER_A)
    assert save_sample(window.canvas, samples, "a").parent.name == "Sample037"
    with pytest.raises(ValueError):
        save_sample(window.canvas, samples, "#")
    charjax_cli(
        [
            "eval",
            "--checkpoint",
            str(window.service._worker.predictor.source),
            "--data",
            f"folder:{samples}",
            "--json",
        ]
    )
    assert json.loads(capsys.readouterr().out)["n"] == 3


def test_drawing_takes_the_focus_from_the_label_so_ctrl_z_undoes_a_stroke(app, window):
    window.activateWindow()
    window.label_edit.setFocus()
    QTest.keyClicks(window.label_edit, "A")
    draw_and_wait(app, window, LETTER_A)
    focused = window.focusWidget()
    QTest.keyClick(focused, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(window.canvas.strokes) == 1 and window.label_edit.text() == "A"


def test_enter_on_an_empty_label_says_what_to_type(app, window):
    draw_and_wait(app, window, LETTER_A)
    QTest.keyClick(window.label_edit, Qt.Key.Key_Return)
    assert "type the character you drew" in window.statusBar().currentMessage()
    window.label_edit.setText("A")
    QTest.keyClick(window.label_edit, Qt.Key.Key_Return)  # saved, and back to drawing
    assert "saved" in window.statusBar().currentMessage() and window.canvas.is_empty()
    assert window.focusWidget() is window.canvas


def test_a_message_about_the_old_drawing_goes_when_the_drawing_changes(app, window):
    window.save_current_sample()
    assert window.statusBar().currentMessage() == "draw a character first"
    draw_and_wait(app, window, LETTER_A[:1])
    assert window.statusBar().currentMessage() == ""
    assert window.model_label.text().startswith("model: ")  # which model stays in view


def test_a_single_click_is_too_little_ink_to_read_not_a_guess(app, window):
    result = draw_and_wait(app, window, [[(200, 200)]])  # pen down and up at one point
    assert result.prediction.blank and window.predictions.chars == ()
    assert window.predictions.message == NO_INK == "too little ink to read"
    assert window.preview.array is not None  # what the model was given is still shown
    draw_and_wait(app, window, LETTER_A)  # a real character is read again
    assert len(window.predictions.chars) == 5


def test_charset_restricts_the_guesses_like_predict_does(app, window):
    window.set_charset("digits")
    assert window.charset.currentText() == "Digits 0-9"
    result = draw_and_wait(app, window, LETTER_A)
    assert set(result.prediction.chars) <= set("0123456789")
    expected = window.service._worker.predictor.predict(window.canvas.to_array(), charset="digits")
    assert result.prediction == expected[0]
    # Back to all 62 re-predicts the drawing as it is.
    shown = window.results_shown
    window.charset.set_spec(None)
    wait_until(app, lambda: window.results_shown > shown)
    assert (
        window.last_result.prediction
        == window.service._worker.predictor.predict(window.canvas.to_array())[0]
    )


def test_charset_menu_custom_entry(app, window, monkeypatch):
    chooser = window.charset
    custom = chooser.findData(CUSTOM)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("0-9A-F", True))
    chooser.activated.emit(custom)
    assert chooser.spec == "0-9A-F" and chooser.currentText() == "0-9A-F"
    assert window.service.allowed == tuple(range(16))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("0-9#", True))
    chooser.activated.emit(chooser.findData(CUSTOM))
    assert chooser.spec == "0-9A-F" and chooser.currentText() == "0-9A-F"  # unchanged
    assert "'#' is not one of the 62 classes" in window.statusBar().currentMessage()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("AB", True))
    chooser.activated.emit(chooser.findData(CUSTOM))
    assert chooser.findData("0-9A-F") < 0  # one custom entry, the newest
    assert [chooser.itemText(i) for i in range(chooser.count())][-2:] == ["AB", "Custom..."]


def test_gui_charset_option(app, tiny_run, capsys):
    assert gui.parse_args(["--charset", "upper"]).charset == "upper"
    with pytest.raises(SystemExit) as exit_:
        gui.parse_args(["--charset", "A-z"])
    assert exit_.value.code == 2 and "range A-z must run forward" in capsys.readouterr().err
    win = MainWindow(checkpoint=tiny_run, charset="0-9A-F")
    assert win.charset.currentText() == "0-9A-F" and win.service.allowed == tuple(range(16))
    win.close()
