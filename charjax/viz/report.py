"""The eval report: where a classifier goes wrong, in three pictures and a short report.md.

    charjax eval --checkpoint runs/resnet --report reports/resnet

writes into the report folder:

- confusion.png: the 62x62 confusion matrix, rows the true class, columns the prediction,
  each row as shares of its class; the cells where a letter is taken for its other case are
  outlined, since those mistakes are often the same picture after cropping (see labels.py);
- per_class.png: accuracy per class, exact and ignoring case;
- mistakes.png: the most confident mistakes, as the model saw them, with true and predicted
  labels;
- report.md: the numbers, the pictures, the most confused pairs and the hardest classes.

Drawn with Pillow (`charjax.viz.grid`), not matplotlib: the matrix is a grid of coloured cells
and the bar chart has fixed axes (0..1, one bar per class), so there are no ticks or scales to
compute, pixels land exactly where intended, and `charjax eval --report` needs only the core
dependencies.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from charjax.atomic import write_text_atomic
from charjax.labels import CLASSES, FOLD_TABLE, NUM_CLASSES
from charjax.viz import grid
from charjax.viz.grid import BACKGROUND, MUTED, TEXT

CELL = 13  # pixels per confusion-matrix cell, 1 of them the grid line
CONFUSION_SIZE = (62 * CELL + 2 * 28, 62 * CELL + 28 + 34)  # matrix + label margins + legend
BAR, CHART_H = 16, 200  # per-class chart: pixels per class, height of the 0..1 axis
MISTAKES = 48  # at most this many mistakes in mistakes.png

_EMPTY = (28, 28, 32)
_NO_DATA = (58, 58, 64)
_CASE_MARK = (120, 230, 120)
_RIGHT = (70, 140, 255)
_RIGHT_CI = (60, 80, 120)
_WRONG = (255, 90, 60)
_CASE_WRONG = (255, 190, 70)
# Class groups are separated by a wider gap: digits | upper case | lower case.
_GROUP_STARTS = (10, 36)


def _is_case_pair(i: int, j: int) -> bool:
    """True for A/a, a/A, ...: the same letter in the other case."""
    return i != j and FOLD_TABLE[i] == FOLD_TABLE[j]


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))


def confusion_image(confusion: np.ndarray) -> Image.Image:
    """The 62x62 confusion matrix as a picture of size CONFUSION_SIZE.

    Args:
      confusion: int [62, 62], rows the true class, columns the predicted class.

    Returns:
      An RGB image: blue diagonal (share of the class recognised), red-orange mistakes
      (share of the true class, square-root scaled so single mistakes show), grey rows for
      classes without examples, green outlines on the case pairs (A predicted as a, ...).
    """
    confusion = np.asarray(confusion)
    rows = confusion.sum(1, keepdims=True)
    share = np.sqrt(confusion / np.maximum(rows, 1))
    image = Image.new("RGB", CONFUSION_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = grid.label_font(10)
    x0, y0 = 28, 28
    for i in range(NUM_CLASSES):
        c = (x0 + i * CELL + CELL // 2, y0 + i * CELL + CELL // 2)
        draw.text((c[0], y0 - 4), CLASSES[i], fill=TEXT, font=font, anchor="ms")
        no_data = rows[i, 0] == 0
        draw.text(
            (x0 - 5, c[1]), CLASSES[i], fill=MUTED if no_data else TEXT, font=font, anchor="rm"
        )
        for j in range(NUM_CLASSES):
            if no_data:
                color = _NO_DATA
            elif confusion[i, j] == 0:
                color = _EMPTY
            else:
                color = _mix(_EMPTY, _RIGHT if i == j else _WRONG, 0.25 + 0.75 * share[i, j])
            x, y = x0 + j * CELL, y0 + i * CELL
            draw.rectangle((x, y, x + CELL - 2, y + CELL - 2), fill=color)
            if _is_case_pair(i, j):
                draw.rectangle((x, y, x + CELL - 2, y + CELL - 2), outline=_CASE_MARK)
    end = 62 * CELL
    for k in _GROUP_STARTS:  # digits | upper | lower
        draw.line((x0 + k * CELL - 1, y0, x0 + k * CELL - 1, y0 + end), fill=MUTED)
        draw.line((x0, y0 + k * CELL - 1, x0 + end, y0 + k * CELL - 1), fill=MUTED)
    draw.text((x0, 3), "rows: true class, columns: predicted class", fill=MUTED, font=font)
    legend_y = y0 + end + 14
    items = (
        (_RIGHT, None, "recognised (share of the true class)"),
        (_WRONG, None, "mistaken for the column's class"),
        (_EMPTY, _CASE_MARK, "same letter, other case"),
    )
    x = x0
    for fill, outline, text in items:
        draw.rectangle((x, legend_y, x + 10, legend_y + 10), fill=fill, outline=outline)
        draw.text((x + 15, legend_y + 5), text, fill=TEXT, font=font, anchor="lm")
        x += 30 + int(font.getlength(text))
    return image


def _bar_x(i: int) -> int:
    return 40 + i * BAR + 8 * sum(i >= g for g in _GROUP_STARTS)


def per_class_image(confusion: np.ndarray) -> Image.Image:
    """Accuracy per class as bars: solid exact, lighter behind it ignoring case.

    Classes without examples show a grey label and no bar.
    """
    confusion = np.asarray(confusion)
    n = confusion.sum(1)
    exact = np.diag(confusion) / np.maximum(n, 1)
    same_letter = FOLD_TABLE[:, None] == FOLD_TABLE[None, :]
    folded = (confusion * same_letter).sum(1) / np.maximum(n, 1)
    width, top = _bar_x(NUM_CLASSES) + 12, 30
    image = Image.new("RGB", (width, top + CHART_H + 26), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = grid.label_font(10)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + round((1 - tick) * CHART_H)
        draw.line((36, y, width - 8, y), fill=(70, 70, 78))
        draw.text((32, y), f"{tick:.2f}", fill=MUTED, font=font, anchor="rm")
    for i in range(NUM_CLASSES):
        x = _bar_x(i)
        if n[i]:
            for value, fill in ((folded[i], _RIGHT_CI), (exact[i], _RIGHT)):
                y = top + round((1 - value) * CHART_H)
                if value > 0:
                    draw.rectangle((x + 1, y, x + BAR - 2, top + CHART_H), fill=fill)
        label_fill = TEXT if n[i] else MUTED
        draw.text(
            (x + BAR // 2, top + CHART_H + 14), CLASSES[i], fill=label_fill, font=font, anchor="ms"
        )
    x = 40
    for fill, text in ((_RIGHT, "accuracy"), (_RIGHT_CI, "ignoring case (A = a)")):
        draw.rectangle((x, 8, x + 10, 18), fill=fill)
        draw.text((x + 15, 13), text, fill=TEXT, font=font, anchor="lm")
        x += 30 + int(font.getlength(text))
    return image


def mistakes_image(images: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> Image.Image:
    """The MISTAKES most confident mistakes, most confident first.

    Each tile is the image as the model saw it, labelled "true -> predicted  probability";
    orange labels are case-only mistakes (A -> a), red ones real confusions.
    """
    labels = np.asarray(labels)
    guess = probs.argmax(1)
    wrong = np.flatnonzero(guess != labels)
    wrong = wrong[np.argsort(-probs[wrong, guess[wrong]], kind="stable")][:MISTAKES]
    font = grid.label_font(11)
    if not len(wrong):
        return grid.stack_sections(
            [(f"no mistakes on {len(labels)} images", Image.new("RGB", (1, 1), BACKGROUND))]
        )
    s = images.shape[-1]
    zoom = max(1, round(64 / s))
    tiles = []
    for k in wrong:
        tile = Image.new("RGB", (max(s * zoom, 84), s * zoom + 18), BACKGROUND)
        glyph = grid.enlarge(images[k], s * zoom)
        tile.paste(glyph, ((tile.width - glyph.width) // 2, 0))
        t, g = int(labels[k]), int(guess[k])
        text = f"{CLASSES[t]} \u2192 {CLASSES[g]}  {probs[k, g]:.2f}"
        fill = _CASE_WRONG if _is_case_pair(t, g) else _WRONG
        ImageDraw.Draw(tile).text(
            (tile.width // 2, tile.height - 4), text, fill=fill, font=font, anchor="ms"
        )
        tiles.append(tile)
    total = int((guess != labels).sum())
    which = f"the {len(wrong)} most confident of {total}" if total > len(wrong) else f"all {total}"
    header = (
        f"{which} mistakes on {len(labels)} images, most confident first "
        "(true \u2192 predicted, probability; orange: only the case is wrong)"
    )
    return grid.stack_sections([(header, grid.tile_grid(tiles, cols=8, gap=6))])


def confused_pairs(confusion: np.ndarray, k: int = 10) -> list[tuple[str, str, int, float]]:
    """The k most frequent mistakes as (true, predicted, count, share of the true class)."""
    confusion = np.asarray(confusion)
    off = confusion * (1 - np.eye(NUM_CLASSES, dtype=confusion.dtype))
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    rows = confusion.sum(1)
    return [
        (CLASSES[i], CLASSES[j], int(off[i, j]), off[i, j] / rows[i])
        for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
        if off[i, j]
    ]


def _markdown(summary: dict, confusion: np.ndarray) -> str:
    n = confusion.sum(1)
    lines = [
        "# Evaluation report",
        "",
        f"- checkpoint: `{summary.get('checkpoint', '?')}`",
        f"- data: `{summary.get('data', '?')}`, {summary['n']} images",
        f"- top-1 **{summary['top1']:.4f}**, ignoring case {summary['top1_case_insensitive']:.4f}, "
        f"top-5 {summary['top5']:.4f}",
        "",
        "## Confusion matrix",
        "",
        "Rows: true class; columns: predicted. Green outlines mark the same letter in the other "
        "case, which cropping to the ink often makes the same picture.",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Accuracy per class",
        "",
        "![per-class accuracy](per_class.png)",
        "",
        "## Most confident mistakes",
        "",
        "![most confident mistakes](mistakes.png)",
        "",
        "## Most confused pairs",
        "",
    ]
    pairs = confused_pairs(confusion)
    if pairs:
        lines += [
            "| true | predicted | count | share of the true class | |",
            "|---|---|---|---|---|",
        ]
        for t, p, count, share in pairs:
            note = "case" if _is_case_pair(CLASSES.index(t), CLASSES.index(p)) else ""
            lines.append(f"| `{t}` | `{p}` | {count} | {share:.2f} | {note} |")
    else:
        lines.append("No mistakes.")
    per_class = summary.get("per_class", {})
    hardest = sorted(per_class.items(), key=lambda kv: kv[1])[:10]
    lines += ["", "## Hardest classes", "", "| class | accuracy | images |", "|---|---|---|"]
    lines += [f"| `{c}` | {a:.2f} | {int(n[CLASSES.index(c)])} |" for c, a in hardest]
    return "\n".join(lines) + "\n"


def write_report(directory, images, labels, probs, summary: dict) -> Path:
    """Writes confusion.png, per_class.png, mistakes.png and report.md into `directory`.

    Args:
      directory: the report folder (created if missing).
      images: uint8 [N, S, S] as the model saw them.
      labels: int [N] true classes.
      probs: float [N, 62] predicted probabilities.
      summary: the dict of `charjax.evaluate.accuracy_report` (plus checkpoint and data).

    Returns:
      The path of report.md.
    """
    directory = Path(directory)
    confusion = np.asarray(summary["confusion"])
    grid.save_png(confusion_image(confusion), directory / "confusion.png")
    grid.save_png(per_class_image(confusion), directory / "per_class.png")
    grid.save_png(
        mistakes_image(np.asarray(images), labels, np.asarray(probs)), directory / "mistakes.png"
    )
    path = directory / "report.md"
    write_text_atomic(path, _markdown(summary, confusion))
    return path
