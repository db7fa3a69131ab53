"""Drawing glyphs from font files: small renderings for the checks, large ones for the dataset.

Dataset glyphs are drawn large (about 3.5x the target size) as dark ink on white, like a scan,
and then go through `charjax.preprocess.preprocess`, the same function `predict` and the GUI
use, so fonts never take a separate resizing path. Variant 0 of each glyph is the plain
rendering; the others vary it mildly at render time (size, stroke weight, position), seeded so
the same seed gives the same dataset.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from charjax.data.strokes import StrokeStyle, draw_skeleton, thin
from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec, preprocess

# Font size for the checks in font_filter: big enough for shapes, small enough to be cheap.
CHECK_SIZE = 48

# Render-time variation of variants 1..K-1 (variant 0 is plain).
_SIZE_JITTER = 0.15  # relative font size, +/-
_OFFSET_JITTER = 0.08  # position, as a fraction of the font size, +/-
_WEIGHT_STEPS = (-1, 0, 1, 1)  # 3x3 erosion / none / dilation; thickening twice as likely
_MIN_KEPT_INK = 0.6  # skip thinning when it would remove more than this share of the ink
# Stroke-style variants thin the glyph at this font size: enough pixels for a faithful
# skeleton, few enough that thinning (a few passes per pixel of stroke width) stays cheap.
_STROKE_EM = 72


def load_face(path: str, index: int = 0, size: int = CHECK_SIZE) -> ImageFont.FreeTypeFont:
    """Opens one face of a font file (raises OSError if FreeType cannot read it).

    The basic layout engine draws one character exactly as the font's cmap says, without
    shaping or substitutions, and is the faster one.
    """
    return ImageFont.truetype(path, size, index=index, layout_engine=ImageFont.Layout.BASIC)


def check_renderer(font: ImageFont.FreeTypeFont) -> Callable[[str], np.ndarray]:
    """A `render(char)` for `font_filter.check_face`: bright ink on black, fixed baseline.

    Every character goes on the same canvas at the same origin, so sizes and vertical
    positions (x-height, ascenders, descenders) compare across characters.
    """
    size = int(font.size)
    side = 2 * size
    origin = (size // 2, int(1.4 * size))  # left end of the baseline

    def render(char: str) -> np.ndarray:
        canvas = Image.new("L", (side, side), 0)
        ImageDraw.Draw(canvas).text(origin, char, font=font, fill=255, anchor="ls")
        return np.asarray(canvas)

    return render


@dataclass(frozen=True)
class RenderJob:
    """One face to draw: the 62 characters x (`variants` + `stroke_variants`), preprocessed
    with `spec`. Stroke variants are the glyph redrawn as a pen drawing (`charjax.data.strokes`).

    Plain values only, so a job can be sent to a worker process.
    """

    path: str
    index: int
    name: str
    spec: dict
    variants: int
    seed: int
    stroke_variants: int = 0


def _face_rng(job: RenderJob, stream: int = 0) -> np.random.Generator:
    # Seeded by the face's name, not its position in the font list, so a face renders the same
    # whether or not other fonts are installed. hashlib, because Python's hash() is salted.
    # Stroke variants draw from their own stream, so adding them leaves the others unchanged.
    digest = hashlib.sha256(job.name.encode()).digest()
    key = [job.seed, int.from_bytes(digest[:8], "little")]
    return np.random.default_rng(key + [stream] if stream else key)


def _draw(font, char: str, px: int, offset: tuple[float, float], ink: int, paper: int):
    side = 2 * px
    canvas = Image.new("L", (side, side), paper)
    xy = (side / 2 + offset[0] * px, side / 2 + offset[1] * px)
    ImageDraw.Draw(canvas).text(xy, char, font=font, fill=ink, anchor="mm")
    return canvas


def _trim(canvas: Image.Image, dark_ink: bool, pad: int) -> Image.Image:
    box = (ImageOps.invert(canvas) if dark_ink else canvas).getbbox()
    if box is None:
        return canvas
    w, h = canvas.size
    return canvas.crop(
        (max(box[0] - pad, 0), max(box[1] - pad, 0), min(box[2] + pad, w), min(box[3] + pad, h))
    )


def _reweight(canvas: Image.Image, step: int, dark_ink: bool) -> Image.Image:
    """Thickens (step > 0) or thins (step < 0) the strokes by one pixel on each side."""
    if step == 0:
        return canvas
    # Dark ink grows under a min filter; bright ink under a max filter.
    thicken = ImageFilter.MinFilter(3) if dark_ink else ImageFilter.MaxFilter(3)
    thin = ImageFilter.MaxFilter(3) if dark_ink else ImageFilter.MinFilter(3)
    if step > 0:
        return canvas.filter(thicken)
    thinned = canvas.filter(thin)

    def ink(im):
        a = np.asarray(im, np.float32)
        return (255.0 - a).sum() if dark_ink else a.sum()

    # Hairline faces would lose strokes altogether.
    return thinned if ink(thinned) >= _MIN_KEPT_INK * ink(canvas) else canvas


def _stroke_variants(font, char: str, job: RenderJob, spec, rng) -> list[np.ndarray]:
    """The glyph thinned once, then redrawn `job.stroke_variants` times with other pens."""
    canvas = _trim(_draw(font, char, _STROKE_EM, (0.0, 0.0), 255, 0), dark_ink=False, pad=2)
    skeleton = thin(np.asarray(canvas) > 127)
    return [
        preprocess(draw_skeleton(skeleton, _STROKE_EM, rng, StrokeStyle()), spec)
        for _ in range(job.stroke_variants)
    ]


def render_face(job: RenderJob) -> np.ndarray:
    """Draws and preprocesses every character of one face.

    Args:
      job: the face, preprocessing spec (as a dict), numbers of variants and seed.

    Returns:
      uint8 [62 * per_char, size, size] with per_char = variants + stroke_variants, ordered by
      character, then the plain variants, then the stroke variants (class `i // per_char`).
    """
    spec = PreprocessSpec.from_dict(job.spec)
    # Draw the way the spec expects input to look (any polarity "auto" accepts).
    dark_ink = spec.polarity != "light-on-dark"
    ink, paper = (0, 255) if dark_ink else (255, 0)
    base_px = int(np.clip(round(3.5 * spec.size), 64, 384))
    rng = _face_rng(job)
    # One font object per variant: size jitter is per variant, so each is opened once.
    sizes = [base_px] + [
        int(round(base_px * rng.uniform(1 - _SIZE_JITTER, 1 + _SIZE_JITTER)))
        for _ in range(job.variants - 1)
    ]
    fonts = [load_face(job.path, job.index, px) for px in sizes]
    stroke_font = load_face(job.path, job.index, _STROKE_EM) if job.stroke_variants else None
    stroke_rng = _face_rng(job, stream=1)

    per_char = job.variants + job.stroke_variants
    out = np.zeros((len(CLASSES) * per_char, spec.size, spec.size), np.uint8)
    for c, char in enumerate(CLASSES):
        if stroke_font is not None:
            drawn = _stroke_variants(stroke_font, char, job, spec, stroke_rng)
            out[c * per_char + job.variants : (c + 1) * per_char] = drawn
        for v in range(job.variants):
            if v == 0:
                offset, step = (0.0, 0.0), 0
            else:
                offset = tuple(rng.uniform(-_OFFSET_JITTER, _OFFSET_JITTER, size=2))
                step = int(rng.choice(_WEIGHT_STEPS))
            canvas = _draw(fonts[v], char, sizes[v], offset, ink, paper)
            if spec.crop:
                # preprocess crops to the ink anyway; dropping most of the empty paper first
                # (keeping a border of it, where preprocess reads the background) makes the
                # stroke filter and preprocessing ~4x cheaper.
                canvas = _trim(canvas, dark_ink, pad=max(4, sizes[v] // 8))
            canvas = _reweight(canvas, step, dark_ink)
            out[c * per_char + v] = preprocess(canvas, spec)
    return out
