"""charjax-gui driven like a user would: simulated mouse strokes on the real widgets, offscreen."""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QPainter, QPointingDevice, QTabletEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QInputDialog, QMenu
from test_generative import trained_runs

import charjax.loaded
from charjax.apps import display, gui
from charjax.apps.canvas import Canvas, qimage_to_array
from charjax.apps.files import bundled_model, newest_run, save_sample
from charjax.apps.gui import MainWindow
from charjax.apps.panels import CUSTOM, char_font, lookalike_note, lookalike_rows
from charjax.apps.worker import _Worker, load_reconstructor
from charjax.cli.main import main as charjax_cli
from charjax.generate import Generator
from charjax.labels import char_to_index
from charjax.predict import Prediction, load
from charjax.preprocess import NO_INK, preprocess
from charjax.viz.glyphs import to_paper

# A capital A in canvas pixels: two slanted strokes and a bar.
LETTER_A = [[(110, 340), (200, 60), (290, 340)], [(150, 230), (250, 230)]]


@pytest.fixture(scope="module")
def app():
    # Read when the QApplication is created: no display needed, same pixels everywhere.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    return QApplication.instance() or QApplication([])


def wait_until(app, condition, timeout=20.0):
    """Runs the event loop until `condition()` holds (a tiny stand-in for pytest-qt's waitUntil)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the GUI")
        app.processEvents()
        time.sleep(0.002)


@pytest.fixture
def window(app, tiny_run, tmp_path):
    win = MainWindow(checkpoint=tiny_run, samples_dir=tmp_path / "samples")
    win.show()
    wait_until(app, lambda: win.service.is_ready)
    yield win
    win.close()


def interpolate(points, step=8.0):
    """A polyline as the dense point stream a real mouse produces."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        n = max(1, int(np.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n) for t in range(1, n + 1)]
    return [QPoint(round(x), round(y)) for x, y in out]


def draw(canvas, polyline, release=True):
    points = interpolate(polyline)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for p in points[1:]:
        QTest.mouseMove(canvas, p)
    if release:
        QTest.mouseRelease(
            canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1]
        )


def draw_and_wait(app, win, strokes):
    for polyline in strokes:
        before = win.results_shown
        draw(win.canvas, polyline)
        wait_until(app, lambda b=before: win.results_shown > b)
    return win.last_result


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


def test_without_a_checkpoint_the_window_says_how_to_train_one(app, tmp_path):
    win = MainWindow(runs_dir=tmp_path / "no_runs", bundled=False)
    win.show()
    app.processEvents()
    text = win.banner.text()
    assert win.banner.isVisible() and "charjax train --arch resnet-small" in text
    assert "make demo" in text
    draw(win.canvas, LETTER_A[0])  # drawing without a model is fine, just not predicted
    app.processEvents()
    assert win.results_shown == 0
    win.close()


def test_a_bad_checkpoint_is_a_message_not_a_crash(app, tmp_path):
    (tmp_path / "empty").mkdir()
    win = MainWindow(checkpoint=tmp_path / "empty")
    wait_until(app, lambda: "Cannot use this model" in win.banner.text())
    assert "holds no charjax checkpoint" in win.banner.text()
    win.close()


def test_newest_run_picks_the_latest_run_with_a_checkpoint(tmp_path):
    assert newest_run(tmp_path / "missing") is None
    for name, sub in (("old", "best"), ("mid", "checkpoints"), ("scratch", "notes")):
        (tmp_path / name / sub).mkdir(parents=True)
    os.utime(tmp_path / "old" / "best", (1, 1))
    assert newest_run(tmp_path) == tmp_path / "mid"


def test_generator_panel_shows_why_it_is_empty_then_a_reconstruction(app, tiny_run, tmp_path):
    win = MainWindow(checkpoint=tiny_run, generator=tmp_path / "ae")
    panel_text = win.reconstruction._image.text
    wait_until(app, lambda: win.service.is_ready and "no checkpoint" in panel_text())
    # The panel's contract: any callable (canvas uint8 [H, W], top-1 char, the classifier's
    # (spec, preprocessed canvas)) -> image uint8.
    win.service._worker.reconstruct = lambda image, char, seen: 255 - image[::4, ::4]
    draw_and_wait(app, win, LETTER_A[:1])
    np.testing.assert_array_equal(win.reconstruction.array, 255 - win.canvas.to_array()[::4, ::4])
    win.close()


@pytest.mark.parametrize("kind", ["vae", "cvae"])
def test_generator_panel_shows_the_runs_reconstruction(
    app, tiny_run, glyph_cache, tmp_path_factory, kind
):
    run = trained_runs(glyph_cache, tmp_path_factory)[kind]
    win = MainWindow(checkpoint=tiny_run, generator=run)
    wait_until(app, lambda: win.service.is_ready and win.service._worker.reconstruct is not None)
    draw_and_wait(app, win, LETTER_A[:1])
    wait_until(app, lambda: win.reconstruction.array is not None)
    generator = Generator.load(run)
    canvas = win.canvas.to_array()
    top1 = win.service._worker.predictor.predict(canvas)[0].top1
    labels = [char_to_index(top1)] if generator.conditional else None
    expected = to_paper(generator.reconstruct(generator.preprocess(canvas), labels))[0]
    np.testing.assert_array_equal(win.reconstruction.array, expected)
    win.close()


def test_a_drawing_is_preprocessed_once_for_preview_guesses_and_reconstruction(
    app, tiny_run, glyph_cache, tmp_path_factory, monkeypatch
):
    worker = _Worker()
    worker.predictor = load(tiny_run)
    vae = trained_runs(glyph_cache, tmp_path_factory)["vae"]  # trained on the same spec
    worker.reconstruct = load_reconstructor(str(vae))
    canvas = np.full((400, 400), 255, np.uint8)
    canvas[100:300, 190:215] = 0  # an "l" on the GUI's canvas
    calls = []
    counted = lambda image, spec: calls.append(spec) or preprocess(image, spec)
    monkeypatch.setattr(charjax.loaded, "preprocess", counted)
    result = worker._predict(canvas)
    assert len(calls) == 1  # preprocessing is most of a drawing's latency
    monkeypatch.undo()
    spec = worker.predictor.spec
    np.testing.assert_array_equal(result.preview, preprocess(canvas, spec))
    assert result.prediction == worker.predictor.predict(canvas)[0]
    generator = Generator.load(vae)
    expected = to_paper(generator.reconstruct(generator.preprocess(canvas)))[0]
    np.testing.assert_array_equal(result.reconstruction, expected)


def test_tablet_pressure_thins_the_stroke(app):
    canvas = Canvas(pen_width=20)
    canvas.show()
    pen = QPointingDevice.primaryPointingDevice()
    left = Qt.MouseButton.LeftButton
    for kind, x, pressure in (
        (QEvent.Type.TabletPress, 100, 0.25),
        (QEvent.Type.TabletMove, 300, 0.25),
        (QEvent.Type.TabletRelease, 300, 0.0),
    ):
        at = QPointF(x, 200)
        event = QTabletEvent(
            kind,
            pen,
            at,
            at,
            pressure,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            Qt.KeyboardModifier.NoModifier,
            left,
            left,
        )
        QApplication.sendEvent(canvas, event)
        assert event.isAccepted()  # so Qt does not also synthesise mouse events
    assert [p[2] for p in canvas.strokes[0].points] == [0.25, 0.25]
    thickness = (canvas.to_array()[:, 200] < 128).sum()
    assert 9 <= thickness <= 12  # 20 px * (0.4 + 0.6 * 0.25) = 11 px, not the full 20


def test_qimage_to_array_respects_the_row_stride(app):
    image = QImage(13, 5, QImage.Format.Format_RGB32)  # 13 px: rows padded in Grayscale8
    image.fill(0xFFFFFFFF)
    image.setPixel(12, 4, 0xFF000000)
    image.setPixel(0, 1, 0xFF000000)
    arr = qimage_to_array(image)
    assert arr.shape == (5, 13)
    assert arr[4, 12] == 0 and arr[1, 0] == 0 and arr.sum() == (65 - 2) * 255


def test_lookalikes_are_grouped_with_their_combined_probability():
    pred = Prediction(("o", "O", "c", "0", "C"), (0.4, 0.3, 0.1, 0.1, 0.05))
    assert lookalike_rows(pred.chars) == [("0Oo", [0, 1, 3]), ("Cc", [2, 4])]
    note = lookalike_note(pred)
    assert "o O 0" in note and "80.0%" in note and "c C" in note and "15.0%" in note


def test_pyside_does_not_leak_references_to_none(app):
    # PySide6 6.12.0 on Python < 3.12 drops a reference to None on every binding call that
    # returns None, so a long drawing session aborts Python ("none_dealloc"). pyproject.toml
    # excludes that release; this catches it (or a relapse) coming back.
    point = QPointF()
    before = sys.getrefcount(None)
    for _ in range(1000):
        point.setX(1.0)
    assert before - sys.getrefcount(None) < 500


# --- issue 17 items 9-10, issue 14 item 4 ---------------------------------------------------


def test_a_missing_xcb_library_is_named_with_its_debian_package(monkeypatch, capsys):
    missing = {"libxcb-cursor.so.0", "libxcb-keysyms.so.1"}
    monkeypatch.setattr(display, "loadable", lambda soname: soname not in missing)
    x11 = {"DISPLAY": ":0"}
    problem = display.display_problem(x11, "linux")
    assert "libxcb-cursor.so.0, libxcb-keysyms.so.1" in problem
    assert problem.endswith("sudo apt-get install libxcb-cursor0 libxcb-keysyms1")
    # Other platforms do not load the xcb plugin, so nothing is missing for them.
    for environ in ({"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "wayland;xcb"},
                    {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}):  # fmt: skip
        assert display.display_problem(environ, "linux") is None
    assert display.display_problem({}, "darwin") is None
    # charjax-gui says it in one line and exits before Qt could abort the process.
    monkeypatch.setattr(gui.QApplication, "instance", staticmethod(lambda: None))
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(gui, "MainWindow", None)  # never reached
    assert gui.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("charjax-gui: error: Qt's xcb platform plugin needs")
    assert err.count("\n") == 1 and "libxcb-cursor0" in err


def test_readme_lists_every_xcb_package_the_check_can_ask_for():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert all(package in readme for package in display.XCB_LIBRARIES.values())


def test_without_a_display_the_gui_says_so(monkeypatch):
    monkeypatch.setattr(display, "loadable", lambda soname: True)
    assert "$DISPLAY is not set" in display.display_problem({}, "linux")
    assert display.display_problem({"DISPLAY": ":1"}, "linux") is None


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


def test_a_failed_open_keeps_the_working_model(app, window, tmp_path):
    working = window.model_label.text()
    (tmp_path / "empty").mkdir()
    window.open_checkpoint(tmp_path / "empty")
    wait_until(app, lambda: "Cannot use this model" in window.banner.text())
    assert "Still using" in window.banner.text() and window.service.is_ready
    assert window.model_label.text() == working
    draw_and_wait(app, window, LETTER_A)  # still predicts
    assert len(window.predictions.chars) == 5


def test_a_failed_first_open_points_to_the_bundled_model(app, tmp_path):
    (tmp_path / "empty").mkdir()
    win = MainWindow(checkpoint=tmp_path / "empty")
    wait_until(app, lambda: "Cannot use this model" in win.banner.text())
    assert "Teach &rsaquo; Use bundled model" in win.banner.text()
    assert str(bundled_model()) in win.banner.text()
    menus = {m.title(): m for m in win.menuBar().findChildren(QMenu)}
    assert "Use &bundled model" in [a.text() for a in menus["&Teach"].actions()]
    win.close()


def test_the_banner_shows_all_its_text_and_the_window_shrinks_after_it(app, window):
    before = window.height()
    window._show_problem("<b>Cannot use this model.</b><br>" + "a long reason " * 60 + "END")
    app.processEvents()
    banner = window.banner
    assert banner.height() >= banner.heightForWidth(banner.width())  # nothing cut off
    assert window.height() > before
    window._hide_banner()
    app.processEvents()
    assert window.height() == before


def test_l_and_I_are_drawn_differently_in_the_top5(app):
    def ink(char):
        image = QImage(80, 80, QImage.Format.Format_RGB32)
        image.fill(0xFFFFFFFF)
        painter = QPainter(image)
        painter.setFont(char_font(QApplication.font()))
        painter.drawText(image.rect(), Qt.AlignmentFlag.AlignCenter, char)
        painter.end()
        return qimage_to_array(image) < 128

    # A bare vertical bar has the same ink width on every row: the sans-serif l (and I), which
    # differ only by a little height. Serifs, a foot or a tail are what tells them apart.
    for char in "lI":
        widths = ink(char).sum(axis=1)
        widths = widths[widths > 0]
        assert widths.max() >= 1.5 * np.median(widths), f"{char} is drawn as a bare bar"
    assert (ink("l") != ink("I")).sum() > 20


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
