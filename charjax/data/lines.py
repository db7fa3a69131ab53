"""Lines of text to read: texts with words, numbers, dates and codes, and their renderings.

    make_line_set("print", 50)    # printed lines, one test-split font family per line
    make_line_set("hand", 50)     # hand-print: each glyph of a handwriting font redrawn by a pen
    make_line_set("script", 50)   # joined script: cursive fonts, letters connected

The texts use only the 62 classes and spaces (charjax reads nothing else), in mixed case, with
many words made of the letters whose two cases share one shape (c o s v w x z), so case in
context is measured. Printed lines come from the font families `font_split` puts in the test
split, so the classifier never saw them. Hand-print redraws each glyph of a handwriting face
along its skeleton with a jittered pen (`charjax.data.strokes`, as the training set's stroke
variants do) and sets the glyphs on a wobbly baseline with uneven spacing. No test-split family
is a joined script, so script lines use the cursive training families: the classifier saw
their letters alone, never joined (the benchmark's table says so).
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from charjax.data import font_filter, font_render, fonts
from charjax.data.font_split import split_faces
from charjax.data.strokes import StrokeStyle, draw_skeleton, thin

KINDS = ("print", "hand", "script")

# Words chosen to carry the same-shape letters (c o s v w x z) in both cases, plus common ones.
WORDS = (
    "oxygen", "zoo", "vox", "cows", "wax", "six", "seven", "swiss", "vows", "zones", "cozy",
    "moss", "sox", "woven", "voice", "covers", "excess", "waves", "snow", "cross", "zero",
    "ozone", "vortex", "scoop", "swoosh", "coves", "visor", "sum", "vivid", "waxes", "axes",
    "invoice", "total", "order", "river", "paper", "light", "quick", "brown", "fox", "jumps",
    "over", "lazy", "dog", "hello", "world", "market", "street", "north", "station", "office",
    "number", "account", "delivery", "kitchen", "garden", "history", "planet", "yellow",
    "purple", "bridge", "jacket", "piano", "king", "queen", "table", "window", "mother",
    "father", "letter", "signal", "harbor", "engine", "valve", "pump", "unit", "code", "batch",
    "sample", "result", "report", "summer", "winter", "monday", "friday", "london", "paris",
    "oslo", "zurich", "vienna", "warsaw", "boston", "texas", "ohio", "kansas", "lemon", "apple",
    "cheese", "bread", "coffee", "sugar", "salt", "pepper", "honey", "butter",
)  # fmt: skip
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Cursive families (of fonts.HANDWRITING_FAMILIES) whose letters join; the rest print.
SCRIPT_FAMILIES = ("Dancing Script", "Kaushan Script", "Kristi", "Isabella", "Lobster Two",
                   "Leckerli One", "Havana")  # fmt: skip


@dataclass(frozen=True)
class LineSample:
    """One rendered line: uint8 [H, W] dark ink on white, its text, kind and font face."""

    image: np.ndarray
    text: str
    kind: str
    face: str


@dataclass(frozen=True)
class Face:
    path: str
    index: int
    family: str
    name: str


def _word(rng: np.random.Generator) -> str:
    word = str(rng.choice(WORDS))
    style = rng.choice(3, p=(0.45, 0.3, 0.25))
    return word if style == 0 else word.title() if style == 1 else word.upper()


def _code(rng: np.random.Generator) -> str:
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(4, 7))))


def line_text(rng: np.random.Generator, tokens: tuple[int, int] = (3, 6)) -> str:
    """A line of `tokens` (min, max) tokens: words, numbers, dates and codes, mixed case."""
    parts = []
    for _ in range(int(rng.integers(tokens[0], tokens[1] + 1))):
        kind = rng.choice(4, p=(0.6, 0.15, 0.1, 0.15))
        if kind == 0:
            parts.append(_word(rng))
        elif kind == 1:
            parts.append(str(int(rng.choice([rng.integers(0, 100), rng.integers(100, 100000)]))))
        elif kind == 2:
            month = str(rng.choice(MONTHS))
            parts.append(f"{int(rng.integers(1, 29))} {month} {int(rng.integers(1950, 2031))}")
        else:
            parts.append(_code(rng))
    return " ".join(parts)


@functools.cache
def _installed_faces() -> tuple[Face, ...]:
    """The first face of every font file on the machine, with its family name."""
    faces = []
    for path in fonts.find_font_files():
        try:
            family, style = font_render.load_face(str(path)).getname()
        except (OSError, ValueError):
            continue
        faces.append(Face(str(path), 0, family, f"{family} {style} [{path.name}]"))
    return tuple(faces)


def _usable(face: Face) -> bool:
    try:
        render = font_render.check_renderer(font_render.load_face(face.path, face.index))
        return font_filter.check_face(render).reason is None
    except (OSError, ValueError):
        return False


@functools.cache
def faces_for(kind: str) -> tuple[Face, ...]:
    """Usable faces for `kind`: test-split printed families for print, their upright faces
    for hand (redrawn by a pen), the cursive families for script."""
    faces = _installed_faces()
    if kind == "script":
        script = tuple(s.lower() for s in SCRIPT_FAMILIES)
        chosen = [f for f in faces if f.family.lower().startswith(script)]
    else:
        # The only test-split handwriting families are an outline face and a caps face, so
        # hand-print is the unseen printed families drawn by a pen along their skeletons.
        hand = tuple(h.lower() for h in fonts.HANDWRITING_FAMILIES)
        plan = split_faces([f.family for f in faces], [f.name for f in faces])
        test = set(plan.families_in("test"))
        chosen = [f for f in faces if f.family in test and not f.family.lower().startswith(hand)]
        if kind == "hand":
            slanted = ("italic", "oblique")
            chosen = [f for f in chosen if not any(s in f.name.lower() for s in slanted)]
    return tuple(f for f in chosen if _usable(f))


def render_print(text: str, face: Face, px: int) -> np.ndarray:
    """`text` typeset in `face` at `px` pixels, dark on white, with a margin of paper."""
    font = ImageFont.truetype(face.path, px, index=face.index)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    pad = px // 2
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=0, anchor="ls")
    return np.asarray(image)


def render_hand(text: str, face: Face, px: int, rng: np.random.Generator) -> np.ndarray:
    """`text` hand-printed: each glyph redrawn by a pen along its skeleton, set on a wobbly
    baseline with uneven spacing and size."""
    font = ImageFont.truetype(face.path, px, index=face.index)
    pen = rng.uniform(0.05, 0.09)  # one pen per line, as one person writes a line
    style = StrokeStyle(pen=(pen, pen), pen_wobble=0.15)
    height, width = 3 * px, int(px * (1.2 * len(text) + 3))
    line = np.full((height, width), 255, np.uint8)
    x, drift = float(px), 0.0
    for char in text:
        if char == " ":
            x += font.getlength(" ") * rng.uniform(1.4, 2.2)
            continue
        scale = rng.uniform(0.94, 1.06)
        glyph_font = ImageFont.truetype(face.path, max(8, round(px * scale)), index=face.index)
        side = 2 * px
        canvas = Image.new("L", (side, side), 0)
        ImageDraw.Draw(canvas).text((px // 2, int(1.4 * px)), char, font=glyph_font, fill=255,
                                    anchor="ls")  # fmt: skip
        drawn = draw_skeleton(thin(np.asarray(canvas) > 127), px, rng, style)
        border = (drawn.shape[0] - side) // 2
        drift = 0.7 * drift + rng.normal(0.0, 0.02 * px)
        top = int(round(px * 1.5 - 1.4 * px - border + drift)) + px // 2
        left = int(round(x - px // 2 - border))
        h, w = drawn.shape
        if left + w > width:
            break
        region = line[max(top, 0) : top + h, left : left + w]
        np.minimum(region, drawn[max(-top, 0) : max(-top, 0) + region.shape[0]], out=region)
        x += glyph_font.getlength(char) * rng.uniform(0.95, 1.1) + rng.uniform(0.0, 0.06) * px
    return _trim(line, margin=px // 2)


def _trim(image: np.ndarray, margin: int) -> np.ndarray:
    rows = np.flatnonzero((image < 200).any(axis=1))
    cols = np.flatnonzero((image < 200).any(axis=0))
    if rows.size == 0:
        return image
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(crop, margin, constant_values=255)


def make_line_set(
    kind: str,
    n: int,
    seed: int = 0,
    *,
    faces: Sequence[Face] | None = None,
    px: tuple[int, int] = (28, 44),
    tokens: tuple[int, int] = (3, 6),
) -> list[LineSample]:
    """`n` lines of `kind` ("print", "hand" or "script"), seeded.

    Args:
      faces: fonts to cycle through; default `faces_for(kind)`.
      px: range of font sizes in pixels (cap height is about 0.7 of it).
      tokens: range of tokens per line.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown line kind {kind!r}; choose one of {', '.join(KINDS)}")
    faces = list(faces if faces is not None else faces_for(kind))
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    # A family at random, then a face of it: families with many faces do not dominate.
    families = sorted({f.family for f in faces})
    samples = []
    for _ in range(n):
        family = families[int(rng.integers(len(families)))]
        of_family = [f for f in faces if f.family == family]
        face = of_family[int(rng.integers(len(of_family)))]
        text = line_text(rng, tokens)
        size = int(rng.integers(px[0], px[1] + 1))
        if kind == "hand":
            image = render_hand(text, face, size, rng)
        else:
            image = render_print(text, face, size)
        samples.append(LineSample(image, text, kind, face.name))
    return samples
