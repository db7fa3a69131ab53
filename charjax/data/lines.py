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
from charjax.data.handwriting import (
    HandwritingOptions,
    Writer,
    draw_strokes,
    sample_writer,
    split_writers,
    write_char,
    writer_rng,
)
from charjax.data.handwriting_forms import FORMS
from charjax.data.strokes import draw_pen

KINDS = ("print", "hand", "joined", "script")

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
    return _faces_of(fonts.find_font_files())


@functools.cache
def faces_in(paths: tuple[str, ...]) -> tuple[Face, ...]:
    """Usable faces of the font files at `paths` (files or folders, searched recursively),
    less the families of the "script" kind and of the installed fonts' test split (the
    "print" kind's): a line model trained on these still meets the benchmark's lines unseen.
    Family names alone decide, so no installed face is rendered to check it."""
    faces = _faces_of(fonts.find_font_files(paths, system=False))
    held_out = {family.lower() for family in _families_in("test")}
    return tuple(f for f in faces if not _is_script(f) and f.family.lower() not in held_out
                 and _usable(f))  # fmt: skip


def _is_script(face: Face) -> bool:
    """Whether `face` is of one of the cursive families of the "script" kind."""
    return face.family.lower().startswith(tuple(s.lower() for s in SCRIPT_FAMILIES))


def _faces_of(paths) -> tuple[Face, ...]:
    faces = []
    for path in paths:
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
def _families_in(split: str) -> frozenset[str]:
    """The installed font families `font_split` puts in `split` (no face is rendered)."""
    faces = _installed_faces()
    return frozenset(split_faces([f.family for f in faces], [f.name for f in faces])
                     .families_in(split))  # fmt: skip


@functools.cache
def faces_for(kind: str, split: str = "test") -> tuple[Face, ...]:
    """Usable faces for `kind`: for "print", the printed families `font_split` puts in
    `split` (the test split by default: the classifier never saw them); for "script", the
    cursive families; for "hand-print", the handwriting families of `split` that do not join."""
    faces = _installed_faces()
    if kind == "script":
        chosen = [f for f in faces if _is_script(f)]
    else:
        hand = tuple(h.lower() for h in fonts.HANDWRITING_FAMILIES)
        families = _families_in(split)
        chosen = [f for f in faces if f.family in families]
        if kind == "hand-print":
            chosen = [f for f in chosen if f.family.lower().startswith(hand)
                      and not _is_script(f)]  # fmt: skip
        else:
            chosen = [f for f in chosen if not f.family.lower().startswith(hand)]
    return tuple(f for f in chosen if _usable(f))


def render_print(text: str, face: Face, px: int) -> np.ndarray:
    """`text` typeset in `face` at `px` pixels, dark on white, with a margin of paper."""
    font = ImageFont.truetype(face.path, px, index=face.index)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    pad = px // 2
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=0, anchor="ls")
    return np.asarray(image)


def writers_of(split: str = "test", options: HandwritingOptions | None = None) -> list[Writer]:
    """The writers the handwriting dataset (built with `options`, default the defaults)
    puts in `split`: the test writers taught no model trained on it."""
    options = options or HandwritingOptions()
    index = ("train", "val", "test").index(split)
    assignment = split_writers(options.writers, options.val_fraction, options.test_fraction,
                               options.seed)  # fmt: skip
    return [sample_writer(writer_rng(options.seed, int(w)))
            for w in np.flatnonzero(assignment == index)]  # fmt: skip


def _connector(start: np.ndarray, end: np.ndarray, baseline: float, step: float) -> np.ndarray:
    """A joining stroke from one letter's last point to the next one's first, dipping toward
    the baseline as a cursive join does (a quadratic Bezier curve)."""
    control = np.array([(start[0] + end[0]) / 2, max(start[1], end[1], baseline - 2.0)])
    n = max(2, int(np.linalg.norm(end - start) / step) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def render_written(
    text: str, writer: Writer, rng: np.random.Generator, joined: bool = False
) -> np.ndarray:
    """`text` in the hand of a synthetic `writer` (`charjax.data.handwriting`), on a wobbly
    baseline; `joined` links the lower-case letters of each word with cursive joins.

    Returns:
      uint8 [H, W], dark ink on paper, like a scan.
    """
    probe = np.concatenate([p for p, _ in draw_strokes(FORMS["H"][0], "H", writer, rng)])
    baseline, cap = float(probe[:, 1].max()), float(np.ptp(probe[:, 1]))
    points, radii = [], []
    cursor, drift, prev = 0.0, 0.0, None
    for word in text.split(" "):
        for char in word:
            strokes = write_char(char, writer, rng)
            xs = np.concatenate([p[:, 0] for p, _ in strokes])
            drift = 0.8 * drift + rng.normal(0.0, 0.015 * cap)
            shift = np.array([cursor - xs.min(), drift])
            strokes = [(p + shift, r) for p, r in strokes]
            if joined and prev is not None and prev[0].islower() and char.islower():
                join = _connector(prev[1], strokes[0][0][0], baseline + drift, 0.4)
                points.append(join)
                radii.append(np.full(len(join), float(np.median(strokes[0][1]))))
            points.extend(p for p, _ in strokes)
            radii.extend(r for _, r in strokes)
            gap = rng.uniform(0.04, 0.1) if joined else rng.uniform(0.08, 0.22)
            cursor += float(np.ptp(xs)) + gap * cap
            prev = (char, strokes[-1][0][-1])
        cursor += rng.uniform(0.45, 0.75) * cap
        prev = None
    points, radius = np.concatenate(points), np.concatenate(radii)
    border = float(radius.max()) + cap / 4
    low = points.min(axis=0) - border
    shape = tuple(int(v) for v in np.ceil(points.max(axis=0) - low + border)[::-1])  # (H, W)
    ink = draw_pen((points - low)[:, ::-1], shape, radius)
    if writer.grain:  # pencil grain, as in the handwriting dataset
        ink = ink * (1.0 - writer.grain * rng.uniform(0.0, 0.7, ink.shape))
    paper = 1.0 - writer.ink * ink + rng.normal(0.0, 0.015, ink.shape)
    return np.clip(np.rint(paper * 255.0), 0, 255).astype(np.uint8)


def make_line_set(
    kind: str,
    n: int,
    seed: int = 0,
    *,
    faces: Sequence[Face] | None = None,
    writers: Sequence[Writer] | None = None,
    px: tuple[int, int] = (28, 44),
    tokens: tuple[int, int] = (3, 6),
) -> list[LineSample]:
    """`n` lines of `kind` ("print", "hand", "joined" or "script"), seeded.

    Args:
      faces: fonts to draw print and script lines with; default `faces_for(kind)`.
      writers: synthetic writers of hand and joined lines; default `writers_of("test")`.
      px: range of font sizes in pixels (cap height is about 0.7 of it); written lines are
        scaled to the same range.
      tokens: range of tokens per line.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown line kind {kind!r}; choose one of {', '.join(KINDS)}")
    written = kind in ("hand", "joined")
    if written:
        writers = list(writers if writers is not None else writers_of("test"))
    else:
        faces = list(faces if faces is not None else faces_for(kind))
        # A family at random, then a face of it: families with many faces do not dominate.
        families = sorted({f.family for f in faces})
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    samples = []
    for _ in range(n):
        text = line_text(rng, tokens)
        size = int(rng.integers(px[0], px[1] + 1))
        if written:
            w = int(rng.integers(len(writers)))
            image = render_written(text, writers[w], rng, joined=kind == "joined")
            # The synthesis draws capitals 64 px tall; scale to a cap height of 0.7 size.
            image = _scaled(image, 0.7 * size / 64)
            samples.append(LineSample(image, text, kind, f"writer {w}"))
            continue
        family = families[int(rng.integers(len(families)))]
        of_family = [f for f in faces if f.family == family]
        face = of_family[int(rng.integers(len(of_family)))]
        samples.append(LineSample(render_print(text, face, size), text, kind, face.name))
    return samples


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def align(got: str, want: str) -> list[tuple[str | None, str | None]]:
    """A minimum edit alignment of a reading with the truth: (got char, wanted char) pairs,
    None on the side of an insertion or deletion."""
    n, m = len(got), len(want)
    cost = np.zeros((n + 1, m + 1), np.int32)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + (got[i - 1] != want[j - 1]))  # fmt: skip
    pairs, i, j = [], n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (got[i - 1] != want[j - 1]):
            pairs.append((got[i - 1], want[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            pairs.append((got[i - 1], None))
            i -= 1
        else:
            pairs.append((None, want[j - 1]))
            j -= 1
    return pairs[::-1]


def char_errors(got: str, want: str) -> int:
    """Edits (insertions, deletions, substitutions) that turn the reading into the truth."""
    return sum(a != b for a, b in align(got, want))
