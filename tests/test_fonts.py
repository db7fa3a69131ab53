"""The font source: face checks on made-up renderers, splits, and a real build from DejaVu."""

import shutil

import numpy as np
import pytest
from conftest import DEJAVU, needs_dejavu
from PIL import Image, ImageDraw

from charjax.data import font_filter, font_render
from charjax.data.cache import load_cache
from charjax.data.font_split import split_faces
from charjax.data.fonts import build_font_dataset, find_font_files, select_faces
from charjax.errors import CharjaxError
from charjax.labels import CLASSES


def _real(file: str, size: int = font_render.CHECK_SIZE):
    return font_render.check_renderer(font_render.load_face(str(DEJAVU / file), size=size))


def _box(char: str) -> np.ndarray:
    """A tofu box, the same for every character."""
    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).rectangle((20, 30, 50, 70), outline=255, width=3)
    return np.asarray(canvas)


@needs_dejavu
def test_ordinary_face_is_accepted():
    check = font_filter.check_face(_real("DejaVuSans.ttf"))
    assert check.reason is None and check.signature is not None


@needs_dejavu
def test_caps_only_face_is_rejected():
    real = _real("DejaVuSans.ttf")
    check = font_filter.check_face(lambda c: real(c.upper()))
    assert check.reason == font_filter.CAPS


@needs_dejavu
def test_small_caps_face_is_rejected():
    # Lower case drawn as capitals of 70% size on the same baseline, as check_renderer does.
    real = _real("DejaVuSerif.ttf")
    small = font_render.load_face(str(DEJAVU / "DejaVuSerif.ttf"), size=34)

    def render(c):
        if not c.islower():
            return real(c)
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((24, 67), c.upper(), font=small, fill=255, anchor="ls")
        return np.asarray(canvas)

    assert font_filter.check_face(render).reason == font_filter.CAPS


def test_symbol_font_drawing_one_box_is_rejected():
    # The missing-glyph probes draw nothing, every character draws the same box.
    blank = np.zeros((96, 96), np.uint8)
    check = font_filter.check_face(lambda c: blank if c in font_filter.MISSING_PROBES else _box(c))
    assert check.reason == font_filter.SYMBOL


def test_tofu_glyphs_are_missing():
    # Characters without a glyph look exactly like the .notdef box the probes get.
    check = font_filter.check_face(lambda c: _box(c) if c in "xyz\U0010ffff\u0378" else None)
    assert check.reason == font_filter.MISSING and "x y z" in check.detail


@needs_dejavu
def test_blank_glyph_is_rejected():
    real = _real("DejaVuSans.ttf")
    check = font_filter.check_face(lambda c: np.zeros_like(real("A")) if c == "Q" else real(c))
    assert check.reason == font_filter.BLANK and check.detail == "Q"


def test_dingbats_with_distinct_pictures_are_rejected():
    # Every character a different picture, none with letter metrics.
    def render(c):
        rng = np.random.default_rng(ord(c))
        canvas = Image.new("L", (96, 96), 0)
        x, y = rng.integers(5, 40, size=2)
        ImageDraw.Draw(canvas).ellipse((x, y, x + 40, y + 40), outline=255, width=int(x % 7 + 1))
        return np.asarray(canvas)

    assert font_filter.check_face(render).reason is not None


@needs_dejavu
def test_duplicate_outlines_are_found_but_weights_are_not():
    index = font_filter.OutlineIndex()
    sig = {
        f: font_filter.check_face(_real(f)).signature
        for f in ("DejaVuSerif.ttf", "DejaVuMathTeXGyre.ttf", "DejaVuSerif-Bold.ttf")
    }
    index.add(sig["DejaVuSerif.ttf"])
    assert index.find(sig["DejaVuMathTeXGyre.ttf"]) == 0  # same Latin outlines
    assert index.find(sig["DejaVuSerif-Bold.ttf"]) is None


@needs_dejavu
def test_machine_fonts_are_found_and_filtered():
    files = find_font_files()
    dejavu = [f for f in files if f.parent == DEJAVU]
    assert len(dejavu) >= 20
    faces, report = select_faces(dejavu, workers=1)
    assert report.faces == len(dejavu)
    # Only the Latin of DejaVu Math TeX Gyre (DejaVu Serif's outlines) goes.
    assert set(report.rejected) <= {font_filter.DUPLICATE}
    assert len(faces) >= len(dejavu) - 1
    assert "DejaVu Math TeX Gyre" not in {f.family for f in faces}
    assert "duplicate" in report.summary()


def test_font_paths_are_validated(tmp_path, monkeypatch):
    with pytest.raises(CharjaxError, match="does not exist"):
        find_font_files([tmp_path / "nope"], system=False)
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(CharjaxError, match="not a font file"):
        find_font_files([tmp_path / "readme.txt"], system=False)
    monkeypatch.setenv("CHARJAX_FONTS", str(tmp_path / "gone"))
    with pytest.raises(CharjaxError, match="CHARJAX_FONTS"):
        find_font_files(system=False)


@needs_dejavu
def test_env_var_folders_and_broken_fonts(tmp_path, monkeypatch):
    shutil.copy(DEJAVU / "DejaVuSans.ttf", tmp_path / "a.ttf")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.otf").write_bytes(b"not a font at all")
    (tmp_path / "notes.txt").write_text("ignored: not a font suffix")
    monkeypatch.setenv("CHARJAX_FONTS", str(tmp_path))
    files = find_font_files(system=False)
    assert [f.name for f in files] == ["a.ttf", "broken.otf"]
    faces, report = select_faces(files, workers=1)
    assert [f.name for f in faces] == ["DejaVu Sans Book"]
    assert report.rejected[font_filter.UNREADABLE][0].startswith("broken.otf")


def test_split_by_family_is_disjoint_and_stable():
    families = [f"Family {i:02d}" for i in range(40) for _ in range(3)]
    names = [f"{f} Style {j}" for j, f in enumerate(families)]
    plan = split_faces(families, names)
    assert plan.by == "family" and not plan.note
    per_split = [set(plan.families_in(s)) for s in ("train", "val", "test")]
    assert all(per_split) and sum(len(s) for s in per_split) == 40
    assert not (
        per_split[0] & per_split[1] or per_split[0] & per_split[2] or per_split[1] & per_split[2]
    )
    # sha256 of the name, not Python's salted hash(): the same in every process and release.
    assert per_split[1] == {"Family 13", "Family 19", "Family 30"}
    assert per_split[2] == {"Family 22", "Family 39"}
    # A family's split does not depend on which other fonts exist.
    fewer = split_faces(families[:60] + families[-3:], names[:60] + names[-3:])
    assert fewer.families_in("test") == ["Family 39"]


def test_split_falls_back_to_faces_then_examples():
    plan = split_faces(["A"] * 5 + ["B"] * 5, [f"face {i}" for i in range(10)])
    assert plan.by == "face" and "only 2 font families" in plan.note
    assert set(plan.face_splits.tolist()) == {0, 1, 2}
    assert "split by face" in "\n".join(plan.describe())

    plan = split_faces(["A", "B"], ["A Book", "B Book"], seed=1)
    assert plan.by == "example"
    labels = np.tile(np.arange(62), 2)
    splits = plan.example_splits(np.repeat([0, 1], 62), labels)
    assert set(splits.tolist()) == {0, 1, 2}


@needs_dejavu
def test_build_font_dataset_end_to_end(tmp_path):
    fonts = [str(DEJAVU / f) for f in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")]
    path, report = build_font_dataset(
        tmp_path / "fonts",
        size=16,
        font_paths=tuple(fonts),
        system_fonts=False,
        variants=2,
        progress=False,
    )
    cache = load_cache(path)
    assert cache.images.shape == (3 * 62 * 2, 16, 16) and cache.images.dtype == np.uint8
    # Ordered face, character, variant.
    assert cache.labels[:4].tolist() == [0, 0, 1, 1]
    assert np.bincount(cache.labels).tolist() == [6] * len(CLASSES)
    assert cache.groups.tolist() == np.repeat([0, 1, 2], 124).tolist()
    meta = cache.meta
    assert meta["source"] == "fonts" and meta["preprocess"]["size"] == 16
    # In file order: DejaVuSans.ttf, DejaVuSansMono.ttf, DejaVuSerif.ttf.
    assert meta["group_names"] == ["DejaVu Sans Book", "DejaVu Sans Mono Book", "DejaVu Serif Book"]
    assert meta["variants"] == 2 and meta["seed"] == 0
    assert meta["filter"]["faces_accepted"] == 3
    assert all(cache.meta["counts"][s] > 0 for s in ("train", "val", "test"))
    assert set(meta["families"]) == {"train", "val", "test"}
    # Every glyph is inked and bright on black, as preprocess makes it.
    assert (cache.images.reshape(len(cache), -1).max(axis=1) > 128).all()
    assert (cache.images[:, 0, :] < 50).all()  # the margin stays background
    assert report.num_examples == len(cache) and "3 accepted" in report.summary()


def test_no_fonts_is_an_error(tmp_path):
    with pytest.raises(CharjaxError, match="no font files found"):
        build_font_dataset(
            tmp_path / "out", font_paths=(str(tmp_path),), system_fonts=False, progress=False
        )
    with pytest.raises(CharjaxError, match="variants"):
        build_font_dataset(tmp_path / "out", variants=0)
