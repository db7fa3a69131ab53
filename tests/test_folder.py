"""The folder source: class folders, manifests, skipped files and splits."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from charjax.data.cache import load_cache
from charjax.data.folder import (
    build_folder_dataset,
    class_of_folder,
    load_folder_images,
    read_folder,
    split_per_class,
)
from charjax.errors import CharjaxError
from charjax.labels import char_to_index
from charjax.preprocess import PreprocessSpec


def _write_glyph(path: Path, seed: int, mode: str = "L") -> Path:
    """A dark stroke on white, like a scan; the content only has to be an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, (40, 30), "white")
    x = 5 + seed % 20
    ImageDraw.Draw(image).line((x, 4, x + 8, 26), fill="black", width=3)
    image.save(path)
    return path


@pytest.fixture
def class_folders(tmp_path) -> Path:
    """Sample001 (0), Sample011 (A, nested), Sample037 (a), 5 (a digit folder), plus junk."""
    root = tmp_path / "chars"
    for i in range(3):
        _write_glyph(root / "Sample001" / f"img{i}.png", i)
        _write_glyph(root / "Sample011" / "writer1" / f"img{i}.jpg", i, mode="RGB")
        _write_glyph(root / "Sample037" / f"img{i}.bmp", i)
    _write_glyph(root / "5" / "five.png", 7)
    (root / "Sample001" / "notes.txt").write_text("not an image")
    png = _write_glyph(root / "Sample037" / "broken.png", 3).read_bytes()
    (root / "Sample037" / "broken.png").write_bytes(png[: len(png) // 2])  # truncated
    (root / "Sample001" / ".DS_Store").write_bytes(b"\0\1")  # hidden: not even counted
    (root / ".git").mkdir()
    return root


def test_class_folder_names():
    assert class_of_folder("Sample001") == 0
    assert class_of_folder("sample062") == 61  # case-insensitive file systems may say so
    assert class_of_folder("7") == 7
    assert class_of_folder("README") is None
    with pytest.raises(CharjaxError, match="case-insensitive.*Sample011"):
        class_of_folder("A")
    with pytest.raises(CharjaxError, match="out of range"):
        class_of_folder("Sample063")


def test_class_folders_skip_bad_files_and_name_them(class_folders):
    items = read_folder(class_folders)
    assert len(items) == 12  # 3 + 3 + 3 + 1 images, the .txt and the truncated .png
    images, labels, report = load_folder_images(class_folders, PreprocessSpec(size=16))
    assert images.shape == (10, 16, 16) and images.dtype == np.uint8
    assert sorted(labels.tolist()) == [0, 0, 0, 5, 10, 10, 10, 36, 36, 36]
    assert report.used == 10
    assert report.skipped == {
        "not an image": ["Sample001/notes.txt"],
        "unreadable image": ["Sample037/broken.png"],
    }
    summary = report.summary()
    assert "2 skipped" in summary and "Sample001/notes.txt" in summary
    assert "classes without images (58)" in summary
    # Ink comes out bright on black, whatever the input polarity and mode.
    assert images.max() > 200 and images[:, 0, 0].max() == 0


def test_manifest_with_header_relative_paths_and_missing_file(tmp_path):
    _write_glyph(tmp_path / "imgs" / "x.png", 1)
    _write_glyph(tmp_path / "imgs" / "y.png", 2)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\nimgs/x.png,x\nimgs/y.png, Y\n\nimgs/gone.png,3\n")
    assert read_folder(manifest) == [
        (tmp_path / "imgs/x.png", char_to_index("x")),
        (tmp_path / "imgs/y.png", char_to_index("Y")),
        (tmp_path / "imgs/gone.png", 3),
    ]
    images, labels, report = load_folder_images(manifest, PreprocessSpec(size=16))
    assert labels.tolist() == [char_to_index("x"), char_to_index("Y")]
    assert report.skipped == {"missing": ["imgs/gone.png"]}
    # A folder holding manifest.csv reads the manifest too.
    (tmp_path / "manifest.csv").write_text("imgs/x.png,x\n")
    assert read_folder(tmp_path) == [(tmp_path / "imgs/x.png", char_to_index("x"))]


def test_manifest_bad_label_names_the_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.png,a\nb.png,ab\n")
    with pytest.raises(CharjaxError, match=r"m.csv:2: label 'ab'"):
        read_folder(manifest)


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "Sample001").mkdir()
    (tmp_path / "Sample001" / "a.txt").write_text("x")
    with pytest.raises(CharjaxError, match="no usable image among 1 files"):
        load_folder_images(tmp_path, PreprocessSpec())
    with pytest.raises(CharjaxError, match="no class folders"):
        read_folder(tmp_path / "Sample001")
    with pytest.raises(CharjaxError, match="no such folder"):
        read_folder(tmp_path / "missing")


def test_unknown_and_letter_folders_are_errors(tmp_path):
    _write_glyph(tmp_path / "Sample001" / "a.png", 0)
    (tmp_path / "misc").mkdir()
    with pytest.raises(CharjaxError, match="misc are not class folders"):
        read_folder(tmp_path)
    (tmp_path / "misc").rmdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(CharjaxError, match="ambiguous"):
        read_folder(tmp_path)


def test_split_per_class_is_seeded_and_keeps_training_images():
    labels = np.repeat(np.arange(4), [20, 10, 2, 1])
    splits = split_per_class(labels, 0.1, 0.2, seed=3)
    assert np.array_equal(splits, split_per_class(labels, 0.1, 0.2, seed=3))
    assert not np.array_equal(splits, split_per_class(labels, 0.1, 0.2, seed=4))
    assert np.bincount(splits[labels == 0], minlength=3).tolist() == [14, 2, 4]
    assert (splits[labels >= 2] == 0).sum() >= 2  # tiny classes keep an image for training


def test_build_folder_dataset(class_folders, tmp_path):
    out, report = build_folder_dataset(
        class_folders,
        tmp_path / "cache",
        size=16,
        val_fraction=0.34,
        test_fraction=0.34,
        progress=False,
    )
    cache = load_cache(out)
    assert cache.images.shape == (10, 16, 16)
    assert cache.meta["source"] == "folder" and cache.meta["preprocess"]["size"] == 16
    assert cache.meta["skipped"] == {"not an image": 1, "unreadable image": 1}
    assert cache.meta["counts"] == {"train": 4, "val": 3, "test": 3}
    with pytest.raises(CharjaxError, match="fraction"):
        build_folder_dataset(class_folders, tmp_path / "c2", val_fraction=0.6, test_fraction=0.5)
