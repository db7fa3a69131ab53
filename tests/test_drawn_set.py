"""The drawn-glyph evaluation set: Hershey strokes drawn on the GUI canvas, Chars74K layout."""

import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("HersheyFonts")  # a dev dependency (pyproject's dev extra)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from charjax.data.folder import read_folder  # noqa: E402
from tools.drawn_set import DrawnSetOptions, make_drawn_set  # noqa: E402


def test_drawn_set_is_a_folder_dataset_of_canvas_drawings(tmp_path):
    opts = DrawnSetOptions(faces=("futural",), pen_widths=(8.0, 28.0), repeats=1)
    assert make_drawn_set(tmp_path, opts) == 62 * 2
    items = read_folder(tmp_path)
    assert len(items) == 124 and sorted({label for _, label in items}) == list(range(62))
    thin, thick = (
        np.asarray(Image.open(tmp_path / "Sample011" / f"futural-w{w}-0.png")) for w in ("08", "28")
    )  # an "A" with two pens: same canvas, dark ink on white, more ink for the wider pen
    assert thin.shape == (opts.canvas, opts.canvas) and thin.max() == 255
    assert (thick < 128).sum() > 2 * (thin < 128).sum() > 0
