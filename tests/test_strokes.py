"""Stroke-style rendering (charjax.data.strokes) and the font dataset options that use it."""

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DEJAVU, dejavu, needs_dejavu

from charjax.cli.main import cli
from charjax.data import font_render
from charjax.data.fonts import FontOptions, build_font_dataset
from charjax.data.strokes import StrokeStyle, draw_skeleton, stroke_glyph, thin
from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec

STEADY = StrokeStyle(pen=(0.1, 0.1), jitter=0.0, pen_wobble=0.0)


def test_thinning_leaves_a_one_pixel_line_inside_the_shape():
    bar = np.zeros((40, 60), bool)
    bar[15:26, 5:55] = True  # an 11-pixel-thick horizontal bar
    skeleton = thin(bar)
    assert skeleton.any() and not (skeleton & ~bar).any()
    columns = skeleton[:, 12:48].sum(axis=0)  # away from the ends: exactly one pixel per column
    assert (columns == 1).all()
    assert abs(float(np.argwhere(skeleton[:, 30])[0, 0]) - 20) <= 1  # along the middle


def test_pen_draws_the_requested_width():
    skeleton = np.zeros((100, 100), bool)
    skeleton[20:80, 50] = True  # a vertical line
    image = draw_skeleton(skeleton, em=100, rng=np.random.default_rng(0), style=STEADY)
    ink = image < 128  # dark ink on white paper
    widths = ink[image.shape[0] // 2 - 10 : image.shape[0] // 2 + 10].sum(axis=1)
    assert np.all(np.abs(widths - 10) <= 1)  # pen diameter 0.1 em = 10 px


def test_stroke_style_makes_bold_glyphs_thin():
    font = font_render.load_face(str(dejavu("DejaVuSans-Bold.ttf")), 0, 100)
    mask = np.asarray(font_render._draw(font, "H", 100, (0.0, 0.0), 255, 0)) > 127
    drawn = stroke_glyph(mask, em=100, rng=np.random.default_rng(0), style=STEADY) < 128
    # The bold H's stems are ~20 px wide; redrawn with a 10 px pen they carry about half
    # the ink.
    assert 0.3 < drawn.sum() / mask.sum() < 0.7


def test_stroke_rendering_is_deterministic_per_seed():
    font = font_render.load_face(str(dejavu("DejaVuSerif.ttf")), 0, 72)
    mask = np.asarray(font_render._draw(font, "g", 72, (0.0, 0.0), 255, 0)) > 127
    skeleton = thin(mask)
    a, b, c = (draw_skeleton(skeleton, 72, np.random.default_rng(s)) for s in (1, 1, 2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@needs_dejavu
def test_font_dataset_with_stroke_variants_and_family_selection(tmp_path):
    path, report = build_font_dataset(
        tmp_path / "fonts",
        FontOptions(
            size=16,
            system_fonts=False,
            font_paths=(str(DEJAVU),),
            variants=1,
            stroke_variants=2,
            families=("dejavu sans",),  # case-insensitive prefix: Sans, Sans Mono, not Serif
        ),
        progress=False,
    )
    assert report.accepted and all(n.startswith("DejaVu Sans") for n in report.accepted)
    assert report.rejected["not a selected family"]
    images = np.load(path / "images.npy")
    labels = np.load(path / "labels.npy")
    assert len(images) == len(report.accepted) * len(CLASSES) * 3
    assert list(labels[:6]) == [0, 0, 0, 1, 1, 1]  # plain, then 2 stroke variants per glyph
    assert not np.array_equal(images[1], images[2])  # two different pens


def test_font_options_validate_stroke_variants():
    with pytest.raises(CharjaxError, match="stroke variants"):
        FontOptions(stroke_variants=-1)
    assert PreprocessSpec(size=FontOptions().size)


def test_data_fonts_help_lists_the_new_options():
    result = CliRunner().invoke(cli, ["data", "fonts", "--help"])
    assert result.exit_code == 0
    for option in ("--stroke-variants", "--family", "--handwriting"):
        assert option in result.output
