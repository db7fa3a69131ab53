"""`charjax data ...` end to end, in process (and once as a real subprocess)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEJAVU, needs_dejavu
from PIL import Image, ImageDraw

from charjax.cli.main import main
from charjax.data.cache import load_cache


def _run(capsys, *args) -> tuple[int, str, str]:
    """Runs `charjax ARGS`; returns (exit code, stdout, stderr)."""
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charjax: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def font_cache(tmp_path_factory) -> Path:
    """Two DejaVu faces at 16 px, one variant: built through the CLI itself."""
    out = tmp_path_factory.mktemp("cli") / "fonts"
    main(
        [
            "data",
            "fonts",
            "--out",
            str(out),
            "--no-system-fonts",
            "--size",
            "16",
            "--variants",
            "1",
            "--no-progress",
            "--fonts",
            str(DEJAVU / "DejaVuSans.ttf"),
            "--fonts",
            str(DEJAVU / "DejaVuSerif.ttf"),
        ]
    )
    return out


@needs_dejavu
def test_fonts_command_prints_summary(font_cache, capsys):
    cache = load_cache(font_cache)
    assert cache.images.shape == (124, 16, 16)
    code, out, _ = _run(capsys, "data", "info", font_cache)
    assert code == 0
    assert "source      fonts" in out and "size=16" in out
    assert "split by    example" in out  # two faces: said, not hidden


@needs_dejavu
def test_info_writes_a_contact_sheet(font_cache, tmp_path, capsys):
    sheet = tmp_path / "sub" / "sheet.png"
    code, out, _ = _run(capsys, "data", "info", font_cache, "--sheet", sheet, "--per-class", 2)
    assert code == 0 and f"sheet       {sheet}" in out
    with Image.open(sheet) as im:
        # 13 class blocks across, 5 rows, 16 px images shown at 4x.
        assert im.format == "PNG" and im.width > 800 and im.height > 500
    assert not list(sheet.parent.glob(".*tmp*"))  # written atomically, no leftovers


@pytest.mark.slow  # imports JAX and compiles the augmentation: ~5 s
@needs_dejavu
def test_info_augmented_sheet(font_cache, tmp_path, capsys):
    plain, augmented = tmp_path / "plain.png", tmp_path / "aug.png"
    _run(capsys, "data", "info", font_cache, "--sheet", plain, "--per-class", 1)
    code, _, _ = _run(
        capsys, "data", "info", font_cache, "--sheet", augmented, "--augmented", "--per-class", 1
    )
    assert code == 0
    with Image.open(plain) as p, Image.open(augmented) as a:
        assert a.width > p.width * 1.5 and a.height == p.height  # side by side
    # With every sample hollowed, as `train --outline 1` would: the same sheet, other pixels.
    hollow = tmp_path / "hollow.png"
    args = ("--sheet", hollow, "--augmented", "--outline", 1, "--per-class", 1)
    assert _run(capsys, "data", "info", font_cache, *args)[0] == 0
    with Image.open(augmented) as a, Image.open(hollow) as h:
        assert a.size == h.size and np.asarray(a).tobytes() != np.asarray(h).tobytes()


def test_folder_command(tmp_path, capsys):
    for i, name in enumerate(["Sample001", "Sample002", "3"]):
        for k in range(2):
            image = Image.new("L", (30, 30), 255)
            ImageDraw.Draw(image).ellipse((5 + k, 5 + i, 24, 24), outline=0, width=3)
            (tmp_path / "imgs" / name).mkdir(parents=True, exist_ok=True)
            image.save(tmp_path / "imgs" / name / f"{k}.png")
    (tmp_path / "imgs" / "3" / "junk.csv").write_text("1,2")
    code, out, _ = _run(
        capsys,
        "data",
        "folder",
        tmp_path / "imgs",
        "--out",
        tmp_path / "c",
        "--size",
        16,
        "--val-fraction",
        0,
        "--test-fraction",
        0.5,
        "--no-progress",
    )
    assert code == 0 and "6 images used, 1 skipped" in out and "3/junk.csv" in out
    assert load_cache(tmp_path / "c").meta["counts"] == {"train": 3, "val": 0, "test": 3}


@pytest.mark.parametrize(
    "args, words",
    [
        (["data", "info", "/no/such/dataset"], ["no dataset at /no/such/dataset"]),
        (["data", "folder", "/no/such/folder", "--out", "{tmp}/x"], ["no such folder"]),
        (["data", "fonts", "--out", "{tmp}/x", "--fonts", "/no/font.ttf"], ["does not exist"]),
        (
            ["data", "fonts", "--out", "{tmp}/x", "--no-system-fonts", "--fonts", "{tmp}"],
            ["no font files found"],
        ),
        (["data", "fonts", "--out", "{tmp}/x", "--size", "4"], ["image size"]),
        (["data", "fonts", "--out", "{tmp}/x", "--variants", "0"], ["--variants"]),
        (["data", "fonts", "--out", "{tmp}"], ["not a charjax dataset", "refusing"]),
        (["data", "info", "{tmp}"], ["not a complete charjax dataset"]),
        (["data", "info", "{tmp}", "--augmented"], ["--sheet"]),
        (["data", "info", "{tmp}", "--sheet", "{tmp}/s.png", "--outline", "0.5"], ["--augmented"]),
        (["data", "info", "{tmp}", "--sheet", "{tmp}/s.jpg"], ["PNG"]),
        (["data", "folder", "{tmp}", "--out", "{tmp}/x", "--val-fraction", "1"], ["fraction"]),
    ],
)
def test_bad_input_is_one_line_on_stderr(args, words, tmp_path, capsys):
    (tmp_path / "something.txt").write_text("a user's file")
    code, _, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    _assert_one_line_error(code, err, *words)
    assert (tmp_path / "something.txt").exists()


def test_error_from_a_real_process():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "charjax.cli.main",
            "data",
            "folder",
            "/no/such/dir",
            "--out",
            "/tmp/never-written",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_one_line_error(proc.returncode, proc.stderr, "no such folder")
    assert proc.stdout == ""
