"""Which font faces can teach 62-class recognition, judged from their rendered glyphs.

A face is usable when every one of `0-9A-Za-z` is a real, inked glyph, the glyphs differ from
each other, and lower case is not just upper case again (caps-only and small-caps faces would
teach the model that `a` looks like `A`). Each check looks only at pictures, so it works on any
`render(char) -> array` callable: a real font (see `font_render.check_renderer`) or, in tests, a
made-up one. The renderer must draw every character the same way: one canvas size, one
baseline origin, ink bright on black, so glyph positions and sizes can be compared.

Thresholds were calibrated on the DejaVu faces: their case pairs (a/A, g/G, ...) correlate at
most 0.89 after normalisation, while a small-caps rendering correlates at least 0.92.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec, preprocess

# Code points no font maps (U+10FFFF is a noncharacter, U+0378 is unassigned), so a font draws
# its .notdef glyph for them: the "tofu" box, or nothing at all.
MISSING_PROBES = ("\U0010ffff", "\u0378")

# Rejection reasons, shown in summaries (counts per reason) and stored in the cache meta.
MISSING = "missing glyphs"
BLANK = "blank glyphs"
SYMBOL = "symbol font (glyphs not distinct)"
CAPS = "caps-only or small caps"
NO_CASE_SHAPE = "no ascenders/descenders (symbol or decorative font)"
DUPLICATE = "duplicate of an accepted face"
UNREADABLE = "unreadable font"

# Pairs whose two cases differ in shape in ordinary type (unlike c/C, o/O, s/S, ...).
_CASE_PAIRS = "abdeghnqrt"
# Letters for the vertical metrics: x-height letters, ascenders, descenders.
_X_LETTERS = "acemnorsuvwxz"
_ASCENDERS = "bdhkl"
_DESCENDERS = "gpqy"

_INK = 64  # a pixel brighter than this (of 255) is ink
_MAX_IDENTICAL = 3  # a few identical glyphs (I/l, 0/O in some fonts) are normal
_SAME_SHAPE_CORR = 0.9
_MAX_SAME_CASE_PAIRS = 5  # of 10: "most pairs alike" means caps-only or small caps
# Duplicates: same outlines rendered with different hinting (DejaVu Serif vs the Latin of
# DejaVu Math TeX Gyre) differ by ~0.007 in shape and ~1% in ink; distinct faces of one family
# differ by > 0.03 in shape, or by weight (ink) when blurring hides it.
_DUP_SHAPE_DIST = 0.016
_DUP_INK_DIFF = 0.08

_NORM_SPEC = PreprocessSpec(size=24, margin=0.0, polarity="light-on-dark")


@dataclass(frozen=True)
class Signature:
    """What a face's glyphs look like, for finding the same outlines shipped twice.

    Attributes:
      shapes: float32 [62, 64], each glyph cropped, blurred, 8x8, zero mean and unit norm.
      ink: float32 [62], mean ink of each cropped glyph (tells weights apart).
    """

    shapes: np.ndarray
    ink: np.ndarray


@dataclass(frozen=True)
class FaceCheck:
    """The verdict on one face: `reason` is None when usable; `detail` says what was seen."""

    reason: str | None
    detail: str = ""
    signature: Signature | None = None


def _normalise(glyph: np.ndarray) -> tuple[np.ndarray, float]:
    """Cropped glyph -> (shape vector [64], mean ink in [0, 1])."""
    small = preprocess(glyph, _NORM_SPEC)
    ink = float(small.mean()) / 255.0
    # Blur before shrinking: the shape, not the exact stroke pixels, decides the vector.
    im = Image.fromarray(small).filter(ImageFilter.GaussianBlur(1.5))
    v = np.asarray(im.resize((8, 8), Image.Resampling.BOX), np.float32).ravel()
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-6), ink


def _rows(glyph: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero((glyph > _INK).any(axis=1))
    return int(rows[0]), int(rows[-1])


def _chars(chars) -> str:
    chars = list(chars)
    return " ".join(chars[:8]) + (" ..." if len(chars) > 8 else "")


def _case_structure(glyphs: dict[str, np.ndarray]) -> str | None:
    """Checks lower case has x-height letters, taller ascenders and deeper descenders.

    Caps-only and small-caps faces have neither; nor do symbol fonts whose "letters" are
    pictures of similar size. Returns a description of the problem, or None.
    """
    tops = {c: _rows(glyphs[c])[0] for c in _X_LETTERS + _ASCENDERS + _DESCENDERS}
    bottoms = {c: _rows(glyphs[c])[1] for c in _X_LETTERS + _DESCENDERS}
    x_top = float(np.median([tops[c] for c in _X_LETTERS]))
    baseline = float(np.median([bottoms[c] for c in _X_LETTERS]))
    x_height = baseline - x_top
    if x_height <= 0:
        return "lower-case letters have no common height"
    tall = [c for c in _ASCENDERS if tops[c] < x_top - 0.2 * x_height]
    deep = [c for c in _DESCENDERS if bottoms[c] > baseline + 0.15 * x_height]
    if len(tall) < len(_ASCENDERS) - 1 or len(deep) < len(_DESCENDERS) - 1:
        return f"ascenders {len(tall)}/{len(_ASCENDERS)}, descenders {len(deep)}/{len(_DESCENDERS)}"
    return None


def check_face(render: Callable[[str], np.ndarray]) -> FaceCheck:
    """Decides whether a face is usable for 62-class recognition.

    Args:
      render: draws one character: uint8 [H, W], ink bright on black, every character on the
        same canvas at the same baseline origin (so sizes and positions compare).

    Returns:
      A FaceCheck; its signature (for `OutlineIndex`) is set when the face is usable.
    """
    glyphs = {c: np.asarray(render(c)) for c in CLASSES}
    probes = [np.asarray(render(p)) for p in MISSING_PROBES]

    missing = [c for c in CLASSES if any(np.array_equal(glyphs[c], p) for p in probes)]
    if missing:
        return FaceCheck(MISSING, _chars(missing))
    blank = [c for c in CLASSES if glyphs[c].max(initial=0) <= _INK]
    if blank:
        return FaceCheck(BLANK, _chars(blank))
    # Each case on its own (with the digits): a caps-only face repeats A-Z as a-z, which is the
    # case check's business, not a sign of a symbol font.
    for chars in (CLASSES[:36], CLASSES[:10] + CLASSES[36:]):
        distinct = len({glyphs[c].tobytes() for c in chars})
        if distinct < len(chars) - _MAX_IDENTICAL:
            return FaceCheck(SYMBOL, f"{distinct} distinct shapes for {len(chars)} characters")

    shapes, inks = zip(*(_normalise(glyphs[c]) for c in CLASSES), strict=True)
    shapes = np.stack(shapes)
    index = {c: i for i, c in enumerate(CLASSES)}
    alike = [
        c
        for c in _CASE_PAIRS
        if float(shapes[index[c]] @ shapes[index[c.upper()]]) >= _SAME_SHAPE_CORR
    ]
    if len(alike) > _MAX_SAME_CASE_PAIRS:
        return FaceCheck(CAPS, "alike: " + " ".join(f"{c}/{c.upper()}" for c in alike))
    problem = _case_structure(glyphs)
    if problem:
        return FaceCheck(NO_CASE_SHAPE, problem)
    return FaceCheck(None, signature=Signature(shapes, np.asarray(inks, np.float32)))


class OutlineIndex:
    """The signatures of accepted faces, to spot the same outlines shipped twice.

    Kept as growing arrays so checking ~900 faces stays one vectorised comparison per face.
    """

    def __init__(self):
        self._shapes = np.zeros((16, len(CLASSES), 64), np.float32)
        self._inks = np.zeros((16, len(CLASSES)), np.float32)
        self._n = 0

    def find(self, sig: Signature) -> int | None:
        """Index (in order of `add`) of a face with the same outlines as `sig`, or None."""
        if self._n == 0:
            return None
        shapes, inks = self._shapes[: self._n], self._inks[: self._n]
        shape_dist = 1.0 - np.einsum("kgd,gd->kg", shapes, sig.shapes).mean(axis=1)
        ink_diff = np.abs(inks - sig.ink).mean(axis=1) / max(float(sig.ink.mean()), 1e-6)
        hits = np.flatnonzero((shape_dist < _DUP_SHAPE_DIST) & (ink_diff < _DUP_INK_DIFF))
        return int(hits[0]) if hits.size else None

    def add(self, sig: Signature) -> None:
        if self._n == len(self._shapes):
            self._shapes = np.concatenate([self._shapes, np.zeros_like(self._shapes)])
            self._inks = np.concatenate([self._inks, np.zeros_like(self._inks)])
        self._shapes[self._n], self._inks[self._n] = sig.shapes, sig.ink
        self._n += 1
