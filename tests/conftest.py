"""Shared fixtures: small real datasets rendered from the machine's DejaVu fonts.

DejaVu is found the way `charjax data fonts` finds fonts (the usual font folders of Linux,
macOS and Windows, and $CHARJAX_FONTS), not at Debian's path; without it, the tests that
render glyphs skip and say what to install.
"""

import os
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

# Tests must never write into the user's real cache.
os.environ.setdefault("CHARJAX_CACHE", str(Path(__file__).parent / ".cache-never-used"))
# One XLA compilation cache for the test processes and the `charjax` processes they start:
# most of a small test's time is compiling, and many compile the same tiny model's programs
# (the environment variable reaches subprocesses; this process has imported JAX already).
XLA_CACHE = Path(tempfile.gettempdir()) / f"charjax-tests-xla-{os.getuid()}"
# And much of compiling is the backend's (LLVM's) optimisation, which pays off only for programs
# that run long: tests run each program a few times on tiny inputs. Level 1 (XLA's default is
# 2) keeps the same HLO passes, so the same fusions, and compiles a cold run of test_train.py
# in 39 s instead of 59 s; `charjax` itself keeps the default. Level 0 would save a little
# more, but under it the fast layers' gradients no longer matched the plain layers' (some
# elements by ~1 in test_perf_equivalence), so the tests would not check what users run. Set
# before JAX's backend starts, so it reaches this process and the processes it starts.
OPT_LEVEL = "--xla_backend_optimization_level=1"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {OPT_LEVEL}".strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(XLA_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])

from charjax.cli.main import main  # noqa: E402
from charjax.config import TrainConfig  # noqa: E402
from charjax.data.cache import write_cache  # noqa: E402
from charjax.data.fonts import find_font_files  # noqa: E402
from charjax.data.lines import Face  # noqa: E402
from charjax.fit import fit  # noqa: E402
from charjax.labels import CLASSES  # noqa: E402
from charjax.preprocess import PreprocessSpec, preprocess  # noqa: E402

TEST_FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")
NO_DEJAVU = (
    "needs the DejaVu fonts (Debian/Ubuntu: fonts-dejavu-core fonts-dejavu-extra), in a "
    "system font folder or in $CHARJAX_FONTS"
)


def find_dejavu() -> Path | None:
    """The folder of DejaVuSans.ttf among the fonts charjax finds on this machine, or None."""
    return next((p.parent for p in find_font_files() if p.name == "DejaVuSans.ttf"), None)


DEJAVU = find_dejavu()
needs_dejavu = pytest.mark.skipif(DEJAVU is None, reason=NO_DEJAVU)


def line_face(font_file: str, family: str) -> Face:
    """A DejaVu face to print lines with (`charjax.data.lines.render_print`)."""
    return Face(str(DEJAVU / font_file), 0, family, f"{family} Book")


def save_array(tmp_path: Path, array: np.ndarray, name: str = "line.png") -> Path:
    """Writes uint8 pixels as an image file for a command to read; returns its path."""
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path


def page_of(*lines: np.ndarray) -> np.ndarray:
    """Lines of text (uint8, dark on white) stacked top to bottom, left-aligned, on white."""
    page = np.full((sum(x.shape[0] for x in lines), max(x.shape[1] for x in lines)), 255, np.uint8)
    top = 0
    for line in lines:
        page[top : top + line.shape[0], : line.shape[1]] = line
        top += line.shape[0]
    return page


def dejavu(font_file: str) -> Path:
    """The path of a DejaVu font file; skips the calling test when DejaVu is not installed."""
    if DEJAVU is None:
        pytest.skip(NO_DEJAVU)
    return DEJAVU / font_file


def render_char(char: str, font_file: str = "DejaVuSans.ttf", size: int = 48) -> Image.Image:
    """A dark glyph on white, like a scan: the raw input preprocessing expects."""
    font = ImageFont.truetype(str(dejavu(font_file)), size)
    image = Image.new("L", (size * 2, size * 2), 255)
    ImageDraw.Draw(image).text((size // 2, size // 3), char, font=font, fill=0)
    return image


def make_glyph_cache(path: Path, image_size: int = 16, faces=TEST_FACES, chars=CLASSES) -> Path:
    """A tiny dataset: one image per (face, char); the last face is the val and test split."""
    spec = PreprocessSpec(size=image_size)
    images, labels, groups, splits = [], [], [], []
    for g, face in enumerate(faces):
        for char in chars:
            images.append(preprocess(render_char(char, face), spec))
            labels.append(CLASSES.index(char))
            groups.append(g)
            splits.append(0 if g < len(faces) - 1 else 1 + (CLASSES.index(char) % 2))
    meta = {"source": "test-glyphs", "preprocess": spec.to_dict(), "group_names": list(faces)}
    return write_cache(
        path, np.stack(images), np.array(labels), np.array(groups), np.array(splits), meta
    )


@pytest.fixture(scope="session")
def glyph_cache(tmp_path_factory) -> Path:
    """Four DejaVu faces x 62 characters at 16 px (train: 3 faces; val/test: the fourth)."""
    return make_glyph_cache(tmp_path_factory.mktemp("data") / "glyphs16")


def run_cli(capsys, *args):
    """Runs `charjax ARGS` in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def tiny_run(glyph_cache, tmp_path_factory):
    """A `tiny` model after 30 steps: right on some glyphs, wrong on many."""
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(arch="tiny", data=str(glyph_cache), image_size=16, batch_size=62,
                         steps=30, lr=1e-2, augment=0.0, eval_every=0)  # fmt: skip
    fit(config, workdir, progress=False, echo=lambda s: None)
    return workdir


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def app():
    """The offscreen QApplication of the GUI tests (no display needed, same pixels everywhere)."""
    # PySide6 is imported here, not at the top, so the other tests never load Qt.
    from PySide6.QtWidgets import QApplication

    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # read when the QApplication is created
    return QApplication.instance() or QApplication([])


@pytest.fixture
def window(app, tiny_run, tmp_path):
    """charjax-gui's main window on the tiny run, shown and ready to predict."""
    from gui_support import wait_until

    from charjax.apps.gui import MainWindow

    win = MainWindow(checkpoint=tiny_run, samples_dir=tmp_path / "samples")
    win.show()
    wait_until(app, lambda: win.service.is_ready)
    yield win
    win.close()
