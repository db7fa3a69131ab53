"""A contact sheet of a prepared dataset: samples of every class, as the model sees them.

    charjax data info data/fonts --sheet fonts.png --augmented

Images are shown ink bright on black, enlarged with nearest neighbour so single pixels stay
visible; with `augmented=True` each sample is followed by the same image after the training
augmentation. The text summary beside it is `charjax.data.cache.describe`.
"""

import numpy as np
from PIL import Image, ImageDraw

from charjax.data.cache import Cache
from charjax.labels import CLASSES, NUM_CLASSES
from charjax.preprocess import model_input
from charjax.viz.grid import enlarge, label_font, tile_grid

# Rows of the sheet: digits, then each case in two halves, so the sheet stays roughly square.
_SHEET_ROWS = (CLASSES[:10], CLASSES[10:23], CLASSES[23:36], CLASSES[36:49], CLASSES[49:])
_BACKGROUND = 48  # grey, so empty cells and black image backgrounds differ
_GAP, _BLOCK_GAP, _LABEL_H = 2, 10, 20


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


def _augment(images: np.ndarray, seed: int, outline: float) -> np.ndarray:
    # Imported here: JAX takes about a second to load and only --augmented needs it.
    import jax  # noqa: PLC0415

    from charjax.augment import AugmentConfig, augment_batch  # noqa: PLC0415

    x = model_input(images)
    cfg = AugmentConfig(outline=outline)  # charjax train's defaults, and its --outline
    y = np.asarray(augment_batch(jax.random.PRNGKey(seed), x, cfg))
    return np.clip(np.rint(y[..., 0] * 255.0), 0, 255).astype(np.uint8)


def contact_sheet(
    cache: Cache,
    *,
    per_class: int = 4,
    split: str = "all",
    augmented: bool = False,
    outline: float = 0.0,
    seed=0,
) -> Image.Image:
    """A grid of samples: one block per class, labelled with its character.

    Args:
      cache: the dataset.
      per_class: samples per class (fewer when a class has fewer).
      split: "train", "val", "test" or "all".
      augmented: put each sample's augmented version (charjax.augment defaults) beside it.
      outline: with `augmented`, the share of samples hollowed, as `charjax train --outline`.
      seed: chooses the samples and the augmentation.

    Returns:
      A greyscale PIL image.
    """
    picks = _pick(cache, split, per_class, seed)
    flat = np.concatenate(picks).astype(np.int64)
    images = np.asarray(cache.images[flat]) if flat.size else np.zeros((0, 1, 1), np.uint8)
    shown = [images]
    if augmented and flat.size:
        shown.append(_augment(images, seed, outline))
    cell = cache.image_size * max(1, round(64 / cache.image_size))
    block = (len(shown) * cell + (len(shown) - 1) * _GAP, _LABEL_H + per_class * (cell + _GAP))
    font = label_font(14)
    offsets = np.cumsum([0] + [len(p) for p in picks])
    cols = max(len(r) for r in _SHEET_ROWS)
    blocks = []
    for chars in _SHEET_ROWS:
        for char in chars:
            c = CLASSES.index(char)
            tiles = [
                enlarge(imgs[k], cell) for k in range(offsets[c], offsets[c + 1]) for imgs in shown
            ]
            blocks.append(_class_block(char, tiles, len(shown), block, font))
        blocks += [None] * (cols - len(chars))  # each row of the layout starts a grid row
    grid = tile_grid(blocks, cols, gap=_BLOCK_GAP, fill=_BACKGROUND, border=_BLOCK_GAP)
    sheet = Image.new("L", (grid.width, _LABEL_H + grid.height), _BACKGROUND)
    sheet.paste(grid, (0, _LABEL_H))
    size = cache.image_size
    title = f"{cache.meta.get('source', '?')}  {size}x{size}  split={split}"
    title += "  (plain | augmented)" if augmented else ""
    ImageDraw.Draw(sheet).text((_BLOCK_GAP, 3), title, fill=255, font=font)
    return sheet


def _class_block(char: str, tiles: list[Image.Image], cols: int, size, font) -> Image.Image:
    """One class: its character over its samples, `cols` tiles (plain | augmented) a row."""
    block = Image.new("L", size, _BACKGROUND)
    draw = ImageDraw.Draw(block)
    draw.text((size[0] // 2, _LABEL_H // 2), char, fill=255, font=font, anchor="mm")
    if tiles:
        block.paste(tile_grid(tiles, cols, gap=_GAP, fill=_BACKGROUND), (0, _LABEL_H))
    return block
