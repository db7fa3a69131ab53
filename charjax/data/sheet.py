"""Looking at a prepared dataset: a text summary and a contact sheet of samples.

The sheet shows images as the model sees them (ink bright on black), enlarged with nearest
neighbour so single pixels stay visible; with `augmented=True` each sample is followed by the
same image after the training augmentation.
"""

import os
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from charjax.data.cache import SPLITS, Cache
from charjax.labels import CLASSES, NUM_CLASSES
from charjax.preprocess import model_input

# Rows of the sheet: digits, then each case in two halves, so the sheet stays roughly square.
_SHEET_ROWS = (CLASSES[:10], CLASSES[10:23], CLASSES[23:36], CLASSES[36:49], CLASSES[49:])
_BACKGROUND = 48  # grey, so empty cells and black image backgrounds differ
_GAP, _BLOCK_GAP, _LABEL_H = 2, 10, 20


def class_counts(cache: Cache) -> np.ndarray:
    """Examples per split and class: int64 [3, 62] (rows in SPLITS order)."""
    labels = np.asarray(cache.labels)
    splits = np.asarray(cache.splits)
    return np.stack(
        [np.bincount(labels[splits == k], minlength=NUM_CLASSES) for k in range(len(SPLITS))]
    )


def describe(cache: Cache) -> str:
    """A few lines about a cache: source, size, preprocessing, split and class counts."""
    meta = cache.meta
    counts = class_counts(cache)
    spec = ", ".join(f"{k}={v}" for k, v in meta.get("preprocess", {}).items())
    details = [f"{k} {meta[k]}" for k in ("variants", "seed") if k in meta]
    groups = meta.get("group_names", [])
    lines = [
        f"dataset     {cache.path}",
        f"source      {meta.get('source', '?')} ({len(groups)} group{'s' * (len(groups) != 1)}"
        + "".join(f", {d}" for d in details)
        + ")",
        f"images      {len(cache)} x {cache.image_size}x{cache.image_size} uint8, "
        f"created {meta.get('created', '?')}",
        f"preprocess  {spec}",
        "splits      "
        + " | ".join(f"{s} {int(n)}" for s, n in zip(SPLITS, counts.sum(1), strict=True)),
    ]
    if meta.get("split_by"):
        note = f" ({meta['split_note']})" if meta.get("split_note") else ""
        lines.append(f"split by    {meta['split_by']}{note}")
    for split, fams in meta.get("families", {}).items():
        lines.append(f"  {split:5} families: {', '.join(fams) or '-'}")
    if meta.get("skipped"):
        lines.append("skipped     " + ", ".join(f"{n} {r}" for r, n in meta["skipped"].items()))
    cells = ["/".join(str(int(n)) for n in counts[:, c]) for c in range(NUM_CLASSES)]
    if len(set(cells)) == 1:  # font datasets: every class alike, one line says it
        lines.append(f"per class   train/val/test {cells[0]} for each of the {NUM_CLASSES}")
        return "\n".join(lines)
    lines.append("per class   train/val/test")
    width = max(len(s) for s in cells)
    rows = (NUM_CLASSES + 3) // 4
    for r in range(rows):
        row = [f"{CLASSES[c]} {cells[c]:<{width}}" for c in range(r, NUM_CLASSES, rows)]
        lines.append("  " + "    ".join(row).rstrip())
    return "\n".join(lines)


def _label_font(size: int):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)  # Pillow searches the font folders
    except OSError:
        return ImageFont.load_default(size)


def _pick(cache: Cache, split: str, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to `per_class` example indices per class, drawn at random from one split."""
    rng = np.random.default_rng(seed)
    idx = cache.indices(split)
    labels = np.asarray(cache.labels)[idx]
    picks = []
    for c in range(NUM_CLASSES):
        of_class = idx[labels == c]
        n = min(per_class, len(of_class))
        picks.append(np.sort(rng.choice(of_class, n, replace=False)) if n else of_class)
    return picks


def _augment(images: np.ndarray, seed: int) -> np.ndarray:
    # Imported here: JAX takes about a second to load and only --augmented needs it.
    import jax  # noqa: PLC0415

    from charjax.augment import AugmentConfig, augment_batch  # noqa: PLC0415

    x = model_input(images)
    y = np.asarray(augment_batch(jax.random.PRNGKey(seed), x, AugmentConfig()))
    return np.clip(np.rint(y[..., 0] * 255.0), 0, 255).astype(np.uint8)


def contact_sheet(
    cache: Cache, *, per_class: int = 4, split: str = "all", augmented: bool = False, seed=0
) -> Image.Image:
    """A grid of samples: one block per class, labelled with its character.

    Args:
      cache: the dataset.
      per_class: samples per class (fewer when a class has fewer).
      split: "train", "val", "test" or "all".
      augmented: put each sample's augmented version (charjax.augment defaults) beside it.
      seed: chooses the samples and the augmentation.

    Returns:
      A greyscale PIL image.
    """
    picks = _pick(cache, split, per_class, seed)
    flat = np.concatenate(picks).astype(np.int64)
    images = np.asarray(cache.images[flat]) if flat.size else np.zeros((0, 1, 1), np.uint8)
    shown = [images]
    if augmented and flat.size:
        shown.append(_augment(images, seed))
    size = cache.image_size
    scale = max(1, round(64 / size))
    cell = size * scale
    block_w = len(shown) * cell + (len(shown) - 1) * _GAP
    block_h = _LABEL_H + per_class * (cell + _GAP)
    cols = max(len(r) for r in _SHEET_ROWS)
    width = cols * block_w + (cols + 1) * _BLOCK_GAP
    height = _LABEL_H + len(_SHEET_ROWS) * (block_h + _BLOCK_GAP) + _BLOCK_GAP
    sheet = Image.new("L", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _label_font(14)
    title = f"{cache.meta.get('source', '?')}  {size}x{size}  split={split}"
    draw.text(
        (_BLOCK_GAP, 3), title + ("  (plain | augmented)" if augmented else ""), fill=255, font=font
    )

    offsets = np.cumsum([0] + [len(p) for p in picks])
    for row, chars in enumerate(_SHEET_ROWS):
        top = _LABEL_H + _BLOCK_GAP + row * (block_h + _BLOCK_GAP)
        for col, char in enumerate(chars):
            left = _BLOCK_GAP + col * (block_w + _BLOCK_GAP)
            c = CLASSES.index(char)
            draw.text(
                (left + block_w // 2, top + _LABEL_H // 2), char, fill=255, font=font, anchor="mm"
            )
            for k in range(offsets[c + 1] - offsets[c]):
                y = top + _LABEL_H + k * (cell + _GAP)
                for j, imgs in enumerate(shown):
                    tile = Image.fromarray(imgs[offsets[c] + k]).resize(
                        (cell, cell), Image.Resampling.NEAREST
                    )
                    sheet.paste(tile, (left + j * (cell + _GAP), y))
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Writes a PNG atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
