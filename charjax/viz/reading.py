"""A reading drawn over its image (`charjax read --show`): each glyph's box, coloured by the
classifier's confidence, its character above it, and each line's text under the line."""

import os
from pathlib import Path

from PIL import Image, ImageDraw

from charjax.preprocess import load_image
from charjax.viz.grid import label_font, save_png

# Confident glyphs green, doubtful ones orange, guesses red: where to look first.
_SURE, _DOUBT, _GUESS = (20, 150, 60), (230, 140, 0), (210, 30, 30)
_MAX_SIDE = 2400  # larger images are shown scaled down; boxes scale with them


def _colour(confidence: float) -> tuple[int, int, int]:
    return _SURE if confidence >= 0.8 else _DOUBT if confidence >= 0.4 else _GUESS


def reading_picture(image, reading) -> Image.Image:
    """The image (a PIL image or a file path) with `reading`'s boxes and text drawn over it."""
    if isinstance(image, str | os.PathLike):
        image = load_image(image)
    picture = image.convert("RGB")
    scale = min(1.0, _MAX_SIDE / max(picture.size))
    if scale < 1.0:
        size = (round(picture.width * scale), round(picture.height * scale))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    heights = [g.box[3] - g.box[1] for line in reading.lines for g in line.glyphs]
    label = max(10, int(0.45 * scale * (sorted(heights)[len(heights) // 2] if heights else 24)))
    text_font = label_font(label)
    # Room under the picture for each line's text, so the reading never hides the ink.
    footer = (label + 6) * max(1, len(reading.lines)) + 8
    canvas = Image.new("RGB", (picture.width, picture.height + label + 4 + footer), "white")
    canvas.paste(picture, (0, label + 4))
    draw = ImageDraw.Draw(canvas)
    for line in reading.lines:
        for glyph in line.glyphs:
            x0, y0, x1, y1 = (v * scale for v in glyph.box)
            colour = _colour(glyph.confidence)
            draw.rectangle((x0, y0 + label + 4, x1, y1 + label + 4), outline=colour, width=2)
            draw.text((x0, y0 + 2), glyph.char, font=text_font, fill=colour)
    y = picture.height + label + 8
    for line in reading.lines or ():
        draw.text((6, y), line.text, font=text_font, fill=(0, 0, 0))
        y += label + 6
    if not reading.lines:
        draw.text((6, y), reading.note or "no text found", font=text_font, fill=_GUESS)
    return canvas


def save_reading_picture(image, reading, out) -> Path:
    """Writes `reading_picture` to `out` as a PNG (atomically)."""
    return save_png(reading_picture(image, reading), out)
