"""charjax-gui's wide canvas (`--line`, View > Write a line): a word written with the mouse is
read by the same Reader as `charjax read`, live, offscreen."""

import pytest
from gui_support import draw_and_wait, wait_until

from charjax.apps import gui
from charjax.apps.files import bundled_model
from charjax.apps.line import LineWindow
from charjax.predict import load
from charjax.read import Reader, make_reader

# Three separate characters in the wide canvas's pixels: an I, an L and a T.
WORD = [
    [(100, 60), (100, 240)],
    [(220, 60), (220, 240), (300, 240)],
    [(360, 60), (480, 60)],
    [(420, 60), (420, 240)],
]


@pytest.fixture
def line_window(app):
    # The bundled model: the tiny test run reads too poorly for the Reader to call marks text.
    win = LineWindow(bundled_model())
    win.show()
    wait_until(app, lambda: win.service.is_ready)
    yield win
    win.close()


def test_a_written_word_is_read_as_charjax_read_reads_the_same_pixels(app, line_window):
    line_window.engine.setCurrentText("glyphs")
    result = draw_and_wait(app, line_window, WORD)
    expected = Reader(load(line_window.service._worker.predictor.source)).read(
        line_window.canvas.to_array()
    )
    assert result.reading.text == expected.text
    assert len(result.reading.lines) == 1 and len(result.reading.lines[0].glyphs) == 3
    assert line_window.text.text() == expected.text
    assert not line_window.picture.pixmap().isNull()  # the boxes over the drawing
    assert result.picture.shape[1] == line_window.canvas.width()
    assert "read in" in line_window.timing.text()


def test_clearing_the_line_says_what_to_do_and_a_dot_is_not_text(app, line_window):
    draw_and_wait(app, line_window, WORD[:1])
    line_window.canvas.clear()
    wait_until(app, lambda: line_window.last_result is None)
    assert line_window.text.text() == "Write a word or a line"
    result = draw_and_wait(app, line_window, [[(300, 150)]])  # a click: too little ink
    assert result.reading.text == "" and line_window.text.text().startswith("no text found")


def test_the_charset_restricts_every_character_read(app, line_window):
    line_window.charset.set_spec("digits")
    result = draw_and_wait(app, line_window, WORD)
    assert result.reading.text and set(result.reading.text) <= set("0123456789 ")


def test_the_main_window_opens_the_line_window_with_its_model_and_charset(app, window):
    window.set_charset("upper")
    line = window.open_line_window()
    try:
        assert line.charset.spec == "upper"
        wait_until(app, lambda: line.service.is_ready)
        assert line.service._worker.predictor.source == window.model_source
    finally:
        line.close()
    assert gui.parse_args(["--line"]).line


def test_the_lines_engine_reads_the_drawing_as_charjax_read_engine_lines_does(app, line_window):
    line_window.engine.setCurrentText("lines")
    result = draw_and_wait(app, line_window, WORD)
    expected = make_reader(line_window.service._worker.predictor.source, engine="lines").read(
        line_window.canvas.to_array()
    )
    assert line_window.reader.engine == "lines"
    assert result.reading.text == expected.text
    assert line_window.text.text() == (expected.text if expected.lines else expected.note)
