"""`charjax eval --report`: the confusion matrix, per-class chart, mistakes grid and report.md."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from charjax.cli.main import main
from charjax.evaluate import accuracy_report, evaluate_checkpoint
from charjax.labels import CLASSES
from charjax.viz.report import (
    BAR,
    CHART_H,
    CONFUSION_SIZE,
    confused_pairs,
    confusion_image,
    mistakes_image,
    write_report,
)


def test_eval_report_writes_three_pictures_and_a_linked_report(tiny_run, tmp_path, capsys):
    out = tmp_path / "report"
    code = 0
    try:
        main(["eval", "--checkpoint", str(tiny_run), "--split", "all", "--report", str(out),
              "--json"])  # fmt: skip
    except SystemExit as e:
        code = e.code
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)  # still exactly one JSON object
    assert summary["report"] == str(out / "report.md") and summary["n"] == 248
    assert Image.open(out / "confusion.png").size == CONFUSION_SIZE
    # 62 bars plus two 8 px gaps between digits, upper and lower case, and the axis margins.
    assert Image.open(out / "per_class.png").size == (40 + 62 * BAR + 16 + 12, 30 + CHART_H + 26)
    mistakes = Image.open(out / "mistakes.png")
    assert mistakes.width > 8 * 64 and mistakes.height > 64
    text = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert sorted(links) == ["confusion.png", "mistakes.png", "per_class.png"]
    assert f"{summary['top1']:.4f}" in text and "## Most confused pairs" in text


def test_the_confusion_matrix_sums_to_the_number_of_examples(tiny_run):
    report = evaluate_checkpoint(tiny_run, split="all")
    confusion = np.asarray(report["confusion"])
    assert confusion.shape == (62, 62)
    assert confusion.sum() == report["n"] == 248
    np.testing.assert_array_equal(confusion.sum(1), np.full(62, 4))  # 4 faces per class
    assert np.trace(confusion) / report["n"] == pytest.approx(report["top1"])


def _known_answer():
    """Six images: three right, 'A' read as 'a' (case only), '0' as 'O' twice."""
    labels = np.array([10, 36, 1, 10, 0, 0])  # A a 1 A 0 0
    guesses = np.array([10, 36, 1, 36, 24, 24])  # A a 1 a O O
    probs = np.full((6, 62), 0.001, np.float32)
    probs[np.arange(6), guesses] = [0.9, 0.8, 0.7, 0.95, 0.6, 0.85]
    images = np.zeros((6, 16, 16), np.uint8)
    images[:, 4:12, 6:10] = 255
    return images, labels, probs


def test_report_of_a_known_answer(tmp_path):
    images, labels, probs = _known_answer()
    summary = accuracy_report(probs, labels)
    assert confused_pairs(summary["confusion"]) == [("0", "O", 2, 1.0), ("A", "a", 1, 0.5)]
    path = write_report(tmp_path, images, labels, probs, {"checkpoint": "x", **summary})
    text = path.read_text()
    assert "| `A` | `a` | 1 | 0.50 | case |" in text
    assert "| `0` | `O` | 2 | 1.00 |  |" in text
    # Three mistakes, one row of tiles.
    assert Image.open(tmp_path / "mistakes.png").height < 200


def test_confusion_picture_marks_case_pairs_and_empty_classes():
    images, labels, probs = _known_answer()
    confusion = np.asarray(accuracy_report(probs, labels)["confusion"])
    picture = np.asarray(confusion_image(confusion)).astype(int)
    x0 = y0 = 28
    cell = lambda i, j: picture[y0 + i * 13 + 5, x0 + j * 13 + 5]  # centre of cell (i, j)
    edge = lambda i, j: picture[y0 + i * 13, x0 + j * 13]  # its top-left corner
    a, big_a = CLASSES.index("a"), CLASSES.index("A")
    assert cell(big_a, a)[0] > 200  # A read as a: a mistake, red
    assert cell(a, a)[2] > 200 and cell(a, a)[0] < 150  # a read as a: right, blue
    assert tuple(edge(big_a, a)) == tuple(edge(a, big_a)) == (120, 230, 120)  # case pair outline
    z = CLASSES.index("z")
    assert tuple(cell(z, z)) == (58, 58, 64)  # no 'z' in the data: a grey row


def test_no_mistakes_still_gives_a_picture():
    images, labels, probs = _known_answer()
    picture = mistakes_image(images[:3], labels[:3], probs[:3])
    assert picture.width > 100 and picture.height < 100
