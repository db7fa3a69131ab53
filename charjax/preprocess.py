"""The one preprocessing function: any character image -> the array a model sees.

Dataset preparation (every source), `predict`, evaluation on image folders and the GUI all
call `preprocess`, and the `PreprocessSpec` it used is stored in the dataset cache and in every
checkpoint, so a model always sees the kind of image it was trained on.

The output convention is **ink bright on a black background** (uint8, ink near 255). That
makes zero the natural fill value for padding and for the affine warps in augmentation, and
makes grey dilation thicken strokes.
"""

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from charjax.errors import CharjaxError

POLARITIES = ("auto", "dark-on-light", "light-on-dark")

# The side of a model input, in pixels, everywhere (datasets, TrainConfig, models). Below 8 a
# glyph is unreadable; above 256 it holds no more detail, only more compute per image.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256

# Ink weaker than this (on a 0-1 scale, after background removal) means "nothing drawn".
_BLANK_CONTRAST = 0.04
# `has_ink`: a pixel of `preprocess`'s output is ink above the default crop threshold (0.2),
# and ink must span this many stroke widths. Measured at 16, 32 and 64 px: the 62 characters
# of four DejaVu faces at 12-48 pt and of 40 synthetic writers span 2.5 or more (the 12 pt
# bold `x`), a pen dot of 1-200 px 1.6-2.1.
_INK_LEVEL = 51
_MIN_SPAN_IN_STROKES = 2.3
# What charjax says, everywhere (predict, eval, read, the GUI), when `has_ink` is False.
NO_INK = "too little ink to read"


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes model input. Stored as JSON in caches and checkpoints.

    Attributes:
      size: output side in pixels (square).
      margin: empty border around the ink, as a fraction of the output side.
      polarity: "auto" detects whether ink is darker or lighter than the background from the
        image border; the other two values force it.
      crop: crop to the ink's bounding box (keeps aspect, pads to a square) before resizing.
      threshold: a pixel counts as ink above this fraction of the ink range: for the crop box,
        and for the strokes `despeckle` keeps.
    """

    size: int = 32
    margin: float = 0.08
    polarity: str = "auto"
    crop: bool = True
    threshold: float = 0.2

    def __post_init__(self):
        if not MIN_IMAGE_SIZE <= self.size <= MAX_IMAGE_SIZE:
            raise CharjaxError(
                f"image size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, "
                f"got {self.size}"
            )
        if not 0.0 <= self.margin < 0.45:
            raise CharjaxError(f"margin must be in [0, 0.45), got {self.margin}")
        if self.polarity not in POLARITIES:
            raise CharjaxError(
                f"unknown polarity {self.polarity!r}; choose one of {', '.join(POLARITIES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise CharjaxError(f"unknown preprocessing fields {sorted(unknown)}; upgrade charjax?")
        return cls(**d)


def to_grey(image) -> np.ndarray:
    """Any PIL image or array -> float32 [H, W] in [0, 1] (1 = white).

    Transparent images are composited on white, as a viewer would show them. 16-bit images are
    scaled by their bit depth, not their content, so a faint scan stays faint.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            if arr.shape[-1] == 1:
                arr = arr[..., 0]
            else:
                image = Image.fromarray(_to_uint8(arr))
                return to_grey(image)
        if arr.ndim != 2:
            raise CharjaxError(f"expected a 2-D image (or H x W x C), got shape {arr.shape}")
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / 255.0
        if arr.dtype == np.uint16:
            return arr.astype(np.float32) / 65535.0
        if arr.dtype == bool:
            return arr.astype(np.float32)
        arr = arr.astype(np.float32)
        return np.clip(arr, 0.0, 1.0) if arr.max(initial=0) <= 1.0 else arr / 255.0
    if not isinstance(image, Image.Image):
        raise CharjaxError(f"cannot preprocess an object of type {type(image).__name__}")

    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode == "I":
        arr = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / scale, 0.0, 1.0)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        return np.clip(arr if arr.max(initial=0) <= 1.0 else arr / 255.0, 0.0, 1.0)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


# Paper whose level varies by less than this (of the 0-1 grey range) counts as evenly lit.
_UNEVEN = 0.08
# Grain: where the border's noise is above this share of the ink's contrast (faint pencil in
# a photo, or heavy sensor noise), `ink_map` smooths the image with a gaussian of this many
# pixels, then takes this many of the noise's standard deviations off the ink. Otherwise the
# grain comes out as speckles around the strokes, and its clumps widen a glyph's crop and
# break a line's (README, "Chars74K", "Preprocessing"). Below it nothing changes.
_GRAINY = 0.04
_DENOISE_SIGMA = 0.7
_NOISE_FLOOR = 1.5


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _border_level(grey: np.ndarray) -> tuple[float, float]:
    """The background's level and its grain: the median of the image border [H, W], and the
    standard deviation of the border's noise (0 for a clean border).

    The grain comes from the steps between neighbours along the border, which differ by the
    noise alone (their difference's spread is sqrt(2) times the noise's), not by the light's
    slow change across a photo, nor by white paper under noise being clipped at 1. A median
    (1.4826 times the median absolute value is a gaussian's standard deviation) ignores a
    glyph that touches the border.
    """
    h, w = grey.shape
    ring = max(1, min(h, w) // 16)
    strips = (grey[:ring], grey[-ring:], grey[:, :ring].T, grey[:, -ring:].T)  # [ring, side]
    background = float(np.median(np.concatenate([s.ravel() for s in strips])))
    steps = np.concatenate([np.diff(s, axis=1).ravel() for s in strips])
    if steps.size == 0:  # an image one pixel wide or high: no neighbours to compare
        return background, 0.0
    return background, 1.4826 * float(np.median(np.abs(steps))) / math.sqrt(2)


def ink_map(
    grey: np.ndarray, polarity: str = "auto", even_light: bool = False, denoise: bool = True
) -> np.ndarray:
    """Grey [H, W] in [0, 1] -> ink strength [H, W] in [0, 1] on a zero background.

    The background level is the median of the image border. With polarity "auto", the ink is
    whichever extreme (dark or light) lies farther from that background, so dark ink on paper,
    chalk on a board and a photo of a grey sign all come out the same way round. With
    `even_light`, paper whose brightness varies across the image (a photo of a page lit from
    one side) is measured against its own local level instead (`_paper`); an evenly lit image
    comes out the same either way. With `denoise`, an image whose border's noise is strong
    against its ink (`_GRAINY`) is smoothed and its ink lowered by the noise left, so the
    paper's grain does not become ink; a clean image comes out the same either way.
    """
    background, grain = _border_level(grey)
    lo, hi = np.percentile(grey, [1.0, 99.0])
    floor = 0.0
    if denoise and grain > _GRAINY * max(background - lo, hi - background):
        grey = ndimage.gaussian_filter(grey, _DENOISE_SIGMA)
        background, grain = _border_level(grey)
        lo, hi = np.percentile(grey, [1.0, 99.0])
        floor = _NOISE_FLOOR * grain
    if polarity == "auto":
        dark_ink = (background - lo) >= (hi - background)
    else:
        dark_ink = polarity == "dark-on-light"
    paper = _paper(grey, dark_ink) if even_light else None
    if paper is not None and dark_ink:  # light multiplies paper and ink alike: divide it out
        ink = (paper - grey) / np.maximum(paper, 0.05)
    elif paper is not None:
        ink = grey - paper
    else:
        ink = (background - grey) if dark_ink else (grey - background)
    ink = np.clip(ink - floor, 0.0, None)
    # Normalise contrast by a robust maximum so faint pencil and bold marker look alike.
    peak = float(np.percentile(ink, 99.5)) if ink.size > 400 else float(ink.max(initial=0))
    peak = max(peak, float(ink.max(initial=0)) * 0.5)
    if peak < _BLANK_CONTRAST:
        return np.zeros_like(grey)
    return np.clip(ink / peak, 0.0, 1.0)


def _paper(grey: np.ndarray, dark_ink: bool) -> np.ndarray | None:
    """The paper's own level under each pixel of a text image, or None if the paper is evenly
    lit (its level varies by less than `_UNEVEN` across the image).

    Per block of an eighth of the image's short side (at least 8 px), the paper is the
    brightest tenth of the block for dark ink (the darkest for light ink), so ink covering
    up to 90% of a block does not count; each block then takes the median of its 3x3
    neighbours (a block inside a thick stroke is outvoted; a gradient is not biased, as the
    lightest neighbour would bias it), and the grid is scaled up smoothly.
    """
    h, w = grey.shape
    b = max(8, min(h, w) // 8)
    gh, gw = -(-h // b), -(-w // b)
    padded = np.pad(grey, ((0, gh * b - h), (0, gw * b - w)), mode="edge")
    blocks = padded.reshape(gh, b, gw, b).transpose(0, 2, 1, 3).reshape(gh, gw, b * b)
    level = np.percentile(blocks, 90 if dark_ink else 10, axis=2).astype(np.float32)
    level = ndimage.median_filter(level, size=3, mode="nearest")
    if level.max() - level.min() < _UNEVEN:
        return None
    surface = Image.fromarray(level).resize((gw * b, gh * b), Image.Resampling.BILINEAR)
    return np.asarray(surface, np.float32)[:h, :w]


def despeckle(ink: np.ndarray, threshold: float, min_area: int = 3) -> np.ndarray:
    """`ink` with what lies away from strokes zeroed: the sensor noise of a photo or a scan.

    A stroke is a connected piece of ink above `threshold` of at least `min_area` pixels;
    ink within 2 pixels of one (its anti-aliased edge, a faint hairline's start) is kept,
    the rest is not. Left in, single noisy pixels stretch the ink box a line is scaled by,
    and rows of them pass for lines of text.
    """
    # Only the box around any ink is searched: a drawing on a mostly empty canvas is cheap.
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    out = np.zeros_like(ink)
    if rows.size == 0:
        return out
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    labels, _ = ndimage.label(ink[box] > threshold, structure=np.ones((3, 3), bool))
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    strokes = (areas >= min_area)[labels]
    near = ndimage.maximum_filter(strokes.view(np.uint8), size=5)  # within 2 px, separably
    out[box] = np.where(near > 0, ink[box], 0)
    return out


def preprocess(image, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """Turns one character image into model input.

    Args:
      image: a PIL image of any mode (L, RGB, RGBA, P, 1, I;16, ...) and size, or a numpy
        array [H, W] / [H, W, C] (uint8 0-255, uint16, or float 0-1).
      spec: the preprocessing parameters (the ones recorded with the data or checkpoint).

    Returns:
      uint8 [spec.size, spec.size], ink bright (up to 255) on black. A blank image gives zeros.
    """
    ink = despeckle(ink_map(to_grey(image), spec.polarity), spec.threshold)
    if spec.crop:
        rows = np.flatnonzero((ink > spec.threshold).any(axis=1))
        cols = np.flatnonzero((ink > spec.threshold).any(axis=0))
        if rows.size == 0:
            return np.zeros((spec.size, spec.size), np.uint8)
        ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # Pad to a square (keeping aspect) with the margin around the longer side.
    h, w = ink.shape
    side = int(np.ceil(max(h, w) / (1.0 - 2.0 * spec.margin)))
    canvas = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = ink
    # Bilinear in float mode: antialiased when shrinking, no ringing, no 8-bit rounding
    # until the very end.
    resized = Image.fromarray(canvas).resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)


def has_ink(preprocessed: np.ndarray) -> bool:
    """Whether `preprocess`'s output holds something to read, not nothing or a lone dot.

    Blank paper, a uniform image of any colour or size, faint specks and a single click of a
    pen all come out of `preprocess` as zeros or as one round blob filling the square; a
    model would still rank 62 classes for them, with confident-looking numbers. Every
    character (the thinnest `l` and the boldest `o` alike) spans several stroke widths; a dot
    spans about two. So: no ink above the crop threshold, or ink spanning fewer than
    `_MIN_SPAN_IN_STROKES` stroke widths, is "too little ink to read". The stroke width is
    2 * area / perimeter of the ink (close for a bar, a ring or a curve).

    Args:
      preprocessed: uint8 [H, W], ink bright on black: `preprocess`'s output (any size), or
        the ink of a whole text image, as `charjax.read` checks it.
    """
    ink = np.asarray(preprocessed) > _INK_LEVEL
    area = int(ink.sum())
    if area == 0:
        return False
    padded = np.pad(ink, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
        & padded[1:-1, :-2] & padded[1:-1, 2:]
    )  # fmt: skip
    perimeter = area - int(interior.sum())
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    span = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return span >= _MIN_SPAN_IN_STROKES * 2.0 * area / perimeter


def load_image(path) -> Image.Image:
    """Opens an image file fully (so a truncated file fails here, with its name).

    Refuses animated or multi-page files (GIF, TIFF, WebP): one of their frames would be read
    silently, and which one the user meant is theirs to say.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 Mpx and refuses from twice that. A large photo is read
            # (slowly) without the raw warning; a larger one is refused below, in words.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    raise CharjaxError(
                        f"{path} holds {frames} frames (an animation or several pages); "
                        "charjax reads one image: save the frame you mean as a PNG"
                    )
                im.load()
                return im.copy() if im.mode != "P" else im.convert("RGBA")
    except FileNotFoundError:
        raise CharjaxError(f"no such image file: {path}") from None
    except Image.DecompressionBombError:
        raise CharjaxError(
            f"cannot read image {path}: it has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
            "(a decompression bomb, or a photo to scale down first)"
        ) from None
    except (OSError, ValueError) as e:
        raise CharjaxError(f"cannot read image {path}: {e}") from None


def model_input(images):
    """uint8 [B, H, W] -> float32 [B, H, W, 1] in [0, 1]; works on numpy and jax arrays.

    Batches travel to devices as uint8 (4x less to copy) and become floats here, on device.
    """
    return images.astype("float32")[..., None] / 255.0
