"""What every charjax picture is made of: one grid paster, one label font, one PNG writer.

The pictures are grids of small images (samples, feature maps, filters, mistakes, glyphs,
video frames), so they are drawn with Pillow rather than matplotlib: Pillow pastes them
pixel-exactly, enlarged with nearest neighbour so single pixels stay visible, with no axes or
interpolation to fight, and with the core dependencies alone.
"""

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from charjax.atomic import atomic_path

# The dark palette of the inspection pictures (`show`, `filters`, `eval --report`).
BACKGROUND = (40, 40, 44)
TEXT = (235, 235, 235)
MUTED = (160, 160, 168)
GAP, MARGIN, HEADER = 2, 12, 24
LABEL_FONT = "DejaVuSans.ttf"  # Pillow searches the system font folders for it


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at `size` pixels, else Pillow's own font (which may lack some symbols)."""
    try:
        return ImageFont.truetype(LABEL_FONT, size)
    except OSError:
        return ImageFont.load_default(size)


def enlarge(pixels: np.ndarray, width: int, height: int | None = None, smooth=False) -> Image.Image:
    """An image array enlarged to `width` x `height` (default: square); nearest neighbour,
    so every pixel stays a visible block, unless `smooth`."""
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return Image.fromarray(np.asarray(pixels)).resize((width, height or width), resample)


def tile_grid(
    tiles: list[Image.Image | None],
    cols: int,
    gap: int = GAP,
    fill=BACKGROUND,
    border: int = 0,
) -> Image.Image:
    """Pastes equally sized tiles row by row, `cols` to a row, `gap` pixels apart.

    Args:
      tiles: the pictures, all the size of the first; None leaves a slot empty (to end a row
        early). The grid takes the first tile's mode ("L" or "RGB").
      cols: tiles per row (fewer when there are fewer tiles).
      gap: pixels between tiles.
      fill: the colour of the gaps and empty slots.
      border: pixels around the whole grid.
    """
    first = next(t for t in tiles if t is not None)
    (w, h), mode = first.size, first.mode
    rows = math.ceil(len(tiles) / cols)
    cols = min(cols, len(tiles))
    size = (cols * (w + gap) - gap + 2 * border, rows * (h + gap) - gap + 2 * border)
    grid = Image.new(mode, size, fill)
    for i, tile in enumerate(tiles):
        if tile is not None:
            xy = (border + (i % cols) * (w + gap), border + (i // cols) * (h + gap))
            grid.paste(tile.convert(mode), xy)
    return grid


def stack_sections(sections: list[tuple[str, Image.Image]], min_width: int = 0) -> Image.Image:
    """Stacks (header text, picture) sections vertically on one background, with margins."""
    font = label_font(13)
    widths = [max(im.width, math.ceil(font.getlength(text))) for text, im in sections]
    width = max(min_width, *widths) + 2 * MARGIN
    height = MARGIN + sum(HEADER + im.height + MARGIN for _, im in sections)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for text, im in sections:
        draw.text((MARGIN, y + HEADER - 6), text, fill=TEXT, font=font, anchor="ls")
        sheet.paste(im, (MARGIN, y + HEADER))
        y += HEADER + im.height + MARGIN
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Writes `image` as a PNG through `charjax.atomic` and returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
