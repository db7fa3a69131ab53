"""Reading with the bundled line model (`charjax read --engine lines`): real generated lines."""

import json

import numpy as np
import pytest
from conftest import line_face, page_of, run_cli, save_array

from charjax.data.lines import char_errors, make_line_set, render_print
from charjax.read import make_reader

SANS = line_face("DejaVuSans.ttf", "DejaVu Sans")
SERIF = line_face("DejaVuSerif.ttf", "DejaVu Serif")


@pytest.fixture(scope="module")
def reader():
    return make_reader(engine="lines")


@pytest.mark.parametrize("face", [SANS, SERIF], ids=["sans", "serif"])
def test_reads_a_printed_line_whole(reader, face):
    text = "Oxygen 2024 valve KX42B"
    assert char_errors(reader.read(render_print(text, face, 40)).text, text) <= 1


def test_a_line_under_the_sensor_noise_of_a_photo_reads_as_clean(reader):
    # Gaussian noise of 15 grey levels, as a phone photo in dim light: without despeckling,
    # single noisy pixels stretched the line's ink box and rows of them read as lines.
    text = "Oxygen 2024 valve KX42B"
    line = render_print(text, SANS, 40).astype(np.float32)
    noisy = line + np.random.default_rng(0).normal(0, 15, line.shape)
    got = reader.read(np.clip(noisy, 0, 255).astype(np.uint8)).text
    assert char_errors(got, text) <= 1


@pytest.mark.parametrize("ink, sigma", [(0, 35), (160, 12)], ids=["heavy-noise", "pencil"])
def test_a_line_under_grain_strong_against_its_ink_reads_as_clean(reader, ink, sigma):
    # Noise of 35 grey levels on white paper, and faint pencil (grey 160 on paper at 235)
    # under 12: unsmoothed, the grain's clumps read as glyphs (CER 40% and 43% on 50 lines).
    text = "Oxygen 2024 valve KX42B"
    line = render_print(text, SANS, 40).astype(np.float32)
    if ink:
        line = 235 - (255 - line) / 255 * (235 - ink)
    noisy = line + np.random.default_rng(1).normal(0, sigma, line.shape)
    got = reader.read(np.clip(noisy, 0, 255).astype(np.uint8)).text
    assert char_errors(got, text) <= 1


def test_a_page_lit_from_one_side_reads_as_evenly_lit(reader):
    # The paper darkens from 255 to about 100 across the line, as in a photo of a page lit
    # from one side: against one paper level, its dark end read as a block of ink.
    text = "Oxygen 2024 valve KX42B"
    line = render_print(text, SANS, 40).astype(np.float32)
    h, w = line.shape
    light = 1 - np.linspace(0, 0.5, w)[None, :] - np.linspace(0, 0.1, h)[:, None]
    assert char_errors(reader.read((line * light).astype(np.uint8)).text, text) <= 1


def test_case_of_same_shape_letters_comes_from_the_whole_line(reader):
    text = "Swiss cows ZOO"
    got = reader.read(render_print(text, SANS, 40)).text
    assert got.lower() == text.lower() and got == text


def test_joined_lines_of_held_out_writers_are_mostly_read(reader):
    # Joined script is what cutting into glyphs reads worst; the line model needs no cuts.
    lines = make_line_set("joined", 4, seed=11)
    errors = sum(char_errors(reader.read(s.image).text, s.text) for s in lines)
    assert errors / sum(len(s.text) for s in lines) <= 0.25


def test_several_lines_are_read_top_to_bottom_with_boxes_inside_each_line(reader):
    page = page_of(render_print("Monday 17", SANS, 36), render_print("paper OSLO", SANS, 36))
    reading = reader.read(page)
    assert reading.text == "Monday 17\npaper OSLO"
    for line in reading.lines:
        x0, y0, x1, y1 = line.box
        lefts = [g.box[0] for g in line.glyphs]
        assert lefts == sorted(lefts)
        assert all(x0 <= g.box[0] < g.box[2] <= x1 and y0 <= g.box[1] for g in line.glyphs)


def test_cli_engine_lines_prints_the_text_and_json_has_glyphs(tmp_path, capsys):
    path = save_array(tmp_path, render_print("Zoo 42", SANS, 40))
    code, out, _ = run_cli(capsys, "read", "--engine", "lines", "--json", path)
    data = json.loads(out)
    assert code == 0 and data["text"] == "Zoo 42"
    (line,) = data["lines"]
    assert [g["char"] for g in line["glyphs"]] == list("Zoo42")
    assert all(0 < g["confidence"] <= 1 and len(g["top"]) == 5 for g in line["glyphs"])


def test_cli_engine_lines_restricts_to_a_charset(tmp_path, capsys):
    path = save_array(tmp_path, render_print("2O24", SANS, 40))
    code, out, _ = run_cli(capsys, "read", "--engine", "lines", "--charset", "digits", path)
    assert (code, out) == (0, "2024\n")


def test_cli_engine_lines_on_a_blank_image_reads_empty_text_with_a_note(tmp_path, capsys):
    path = save_array(tmp_path, np.full((60, 300), 255, np.uint8))
    code, out, err = run_cli(capsys, "read", "--engine", "lines", path)
    assert (code, out) == (0, "\n")
    assert "no text found" in err and "Traceback" not in err


def test_cli_missing_line_model_is_one_clear_line(tmp_path, capsys):
    path = save_array(tmp_path, render_print("ab", SANS, 40))
    code, _, err = run_cli(capsys, "read", "--lines-model", tmp_path / "nope", "--engine",
                           "lines", path)  # fmt: skip
    assert code != 0 and "not a charjax line model" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
