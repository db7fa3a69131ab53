"""charjax-gui's models: no model, a model that fails to open (first or later), the newest
run, the banner that says so, and the generator panel beside the classifier."""

import os

import numpy as np
import pytest
from gui_support import LETTER_A, draw, draw_and_wait, wait_until
from PySide6.QtWidgets import QMenu
from test_generative import trained_runs

import charjax.loaded
from charjax.apps.files import bundled_model, newest_run
from charjax.apps.gui import MainWindow
from charjax.apps.worker import _Worker, load_reconstructor
from charjax.generate import Generator
from charjax.labels import char_to_index
from charjax.predict import load
from charjax.preprocess import preprocess
from charjax.viz.glyphs import to_paper


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
