"""The handwriting source: synthetic writers drawing all 62 characters with a pen.

    charjax data handwriting --out data/hand --writers 2000       # or, from Python:
    build_handwriting_dataset(Path("data/hand"), HandwritingOptions(writers=2000))

Fonts teach a model letter designs; real handwriting differs in ways fonts do not cover: other
letterforms (open 4, barred 7, single-storey a), slant, proportions, sloppy joins, unclosed
loops, and the marks a pen leaves. Here each synthetic writer is a `Writer`: their own slant,
width, ascender and descender lengths, pen, ink, and one preferred letterform per character
(from `handwriting_forms`), kept across all their characters. Drawing one character:

    letterform --writer's shape--> pen path --hand--> wobbly strokes, trimmed or overshooting
    ends, misplaced joins --pen--> width from speed --ink, paper--> scan --preprocess--> cache

The scan goes through `charjax.preprocess.preprocess` like every other image, into the one
cache format, split into train/val/test **by writer**. Rendering is numpy plus the round pen of
`charjax.data.strokes`; a character costs a few milliseconds.
"""

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from charjax.data.cache import write_cache
from charjax.data.folder import check_split_fractions
from charjax.data.handwriting_forms import FORMS, Glyph, form_weights
from charjax.data.strokes import draw_pen
from charjax.errors import check_range
from charjax.labels import CLASSES
from charjax.preprocess import PreprocessSpec, preprocess

_HEIGHT_PX = 64  # cap height of the drawing before preprocessing scales it to the model size
_STEP_PX = 0.4  # spacing of the pen positions: close enough that the round pen leaves no gaps
_X_HEIGHT = 0.45  # the lower-case body's top line in the letterforms' unit box


@dataclass(frozen=True)
class Writer:
    """One synthetic person's hand, kept for every character they write.

    Attributes:
      forms: for each class (CLASSES order), the index of the letterform this writer uses.
      mix: probability of using another of the class's letterforms for one character.
      slant: horizontal shear, x shift per unit of height (positive leans right).
      width: horizontal scale of the letterforms.
      ascender, descender: scale of the lower-case parts above the x-height and below the
        baseline.
      balance: moves the middle of capitals and digits up (negative) or down, so some
        writers draw small tops on 3, 8, B, and others large ones.
      pen: pen diameter as a fraction of the cap height.
      pressure: how much a slow pen (curves, corners) widens the line and a fast one thins it.
      wobble: amplitude of the slow waviness of the hand, as a fraction of the cap height.
      variability: amplitude of the broad reshaping each drawing of a character gets (loops
        larger or smaller, strokes longer, a bowl moved), as a fraction of the cap height: no
        two drawings of one person's letter are the same shape, and fonts never show that.
      sloppiness: scale of trimmed and overshooting stroke ends and misplaced strokes, which
        open loops, leave gaps at joins and make strokes cross.
      ink: darkness of the ink on the paper (faint pencil ... black marker).
      grain: how grainy the line is (0: ballpoint, 1: soft pencil on rough paper).
      cursive: probability that a lower-case letter gets the entry stroke from the baseline
        and the exit tail of joined-up writing (0 for print writers).
      scan: cap height of the scan in pixels: the drawing (made at 64 px) is resampled to it,
        so small writing on a coarse scan reaches the model blurred and blocky, as it does
        from forms and from small crops.
    """

    forms: tuple[int, ...]
    mix: float
    slant: float
    width: float
    ascender: float
    descender: float
    balance: float
    pen: float
    pressure: float
    wobble: float
    variability: float
    sloppiness: float
    ink: float
    grain: float
    cursive: float
    scan: float


def sample_writer(rng: np.random.Generator) -> Writer:
    """Draws a writer: style choices and how every character of theirs will look."""
    return Writer(
        forms=tuple(int(rng.choice(len(FORMS[c]), p=form_weights(c))) for c in CLASSES),
        mix=float(rng.uniform(0.0, 0.2)),
        # Most people lean right; some write upright or lean back a little.
        slant=float(np.clip(rng.normal(0.12, 0.15), -0.25, 0.5)),
        width=float(np.exp(rng.normal(0.0, 0.15))),
        ascender=float(rng.uniform(0.75, 1.3)),
        descender=float(rng.uniform(0.7, 1.3)),
        balance=float(rng.uniform(-0.25, 0.25)),
        pen=float(np.exp(rng.uniform(np.log(0.045), np.log(0.2)))),
        pressure=float(rng.uniform(0.0, 1.0)),
        wobble=float(rng.uniform(0.0, 0.02)),
        variability=float(rng.uniform(0.02, 0.08)),
        sloppiness=float(rng.uniform(0.2, 1.0)),
        ink=float(rng.uniform(0.35, 1.0)),
        grain=float(rng.uniform(0.0, 1.0) ** 2),
        # About a third of writers join up their lower case, most of the time.
        cursive=float(rng.uniform(0.5, 1.0)) if rng.random() < 0.35 else 0.0,
        # Half the writers are scanned finely; the others as small as 14 px a capital.
        scan=float(
            _HEIGHT_PX if rng.random() < 0.5 else np.exp(rng.uniform(np.log(14), np.log(48)))
        ),
    )


def _catmull_rom(points: np.ndarray, per_segment: int = 16) -> np.ndarray:
    """A dense smooth curve [Q, 2] through `points` [P, 2]; repeated points are corners."""
    if len(points) == 1:
        return points.copy()
    padded = np.concatenate([points[:1], points, points[-1:]])
    p0, p1, p2, p3 = (padded[i : len(padded) - 3 + i, None] for i in range(4))  # [S, 1, 2]
    m1, m2 = (p2 - p0) / 2, (p3 - p1) / 2  # tangents at p1 and p2
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[None, :, None]  # [1, T, 1]
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    curve = h00 * p1 + h10 * m1 + h01 * p2 + h11 * m2  # [S, T, 2]
    return np.concatenate([curve.reshape(-1, 2), points[-1:]])


def _resample(path: np.ndarray, step: float) -> np.ndarray:
    """Points every `step` along a polyline [Q, 2] (by arc length), ends included."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < step:
        return path[[0, -1]]
    at = np.linspace(0.0, s[-1], int(np.ceil(s[-1] / step)) + 1)
    return np.stack([np.interp(at, s, path[:, k]) for k in (0, 1)], axis=1)


def _adjust_ends(path: np.ndarray, start: float, end: float) -> np.ndarray:
    """Trims (negative) or extends along the tangent (positive) each end by a length."""
    for flip, amount in ((True, start), (False, end)):
        path = path[::-1] if flip else path
        n = len(path)
        if amount < 0 and n > 8:
            keep = max(4, n - int(-amount / _STEP_PX))
            path = path[:keep]
        elif amount > 0 and n > 2:
            tangent = path[-1] - path[-3]
            tangent = tangent / max(float(np.linalg.norm(tangent)), 1e-6)
            steps = np.arange(1, int(amount / _STEP_PX) + 1)[:, None] * _STEP_PX
            path = np.concatenate([path, path[-1] + steps * tangent])
        path = path[::-1] if flip else path
    return path


def _pen_radius(path: np.ndarray, writer: Writer, rng) -> np.ndarray:
    """Per-point pen radius [P]: wider where the hand slows down (curves, corners)."""
    base = writer.pen * _HEIGHT_PX / 2 * math.exp(rng.normal(0.0, 0.08))
    if len(path) < 3:
        return np.full(len(path), base)
    d = np.diff(path, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    turn = np.abs(np.diff(heading, prepend=heading[0], append=heading[-1]))  # [P]
    window = np.hanning(15) / np.hanning(15).sum()
    smooth = np.convolve(np.pad(turn, 7, mode="edge"), window, mode="valid")  # [P]
    curvature = smooth / _STEP_PX  # radians per pixel
    speed = 1.0 / (1.0 + 8.0 * curvature)  # 1 on straight runs, ~0 in a tight corner
    return base * (1.0 + writer.pressure * (0.35 * (1.0 - speed) - 0.15))


def _shape(points: np.ndarray, char: str, writer: Writer, jitter: dict) -> np.ndarray:
    """Letterform unit coordinates -> the writer's shape, in pixels (x right, y down)."""
    x, y = points[:, 0].copy(), points[:, 1].copy()
    if char.islower():
        y = np.where(y < _X_HEIGHT, _X_HEIGHT - (_X_HEIGHT - y) * writer.ascender, y)
        y = np.where(y > 1.0, 1.0 + (y - 1.0) * writer.descender, y)
    else:
        y = y + writer.balance * y * (1.0 - y)  # monotone for |balance| < 1
    x = x * writer.width * jitter["width"]
    x = x + (writer.slant + jitter["slant"]) * (1.0 - y)  # shear about the baseline
    cos, sin = math.cos(jitter["angle"]), math.sin(jitter["angle"])
    x, y = cos * x - sin * y, sin * x + cos * y
    return np.stack([x, y], axis=1) * _HEIGHT_PX


def _wobble(points: np.ndarray, amplitude: float, waves: np.ndarray) -> np.ndarray:
    """A slow smooth displacement of pixel points [P, 2] (a sum of a few plane waves)."""
    freq, phase, direction = waves[:, :2], waves[:, 2], waves[:, 3:]
    arg = points @ freq.T / _HEIGHT_PX * (2 * math.pi) + phase  # [P, K]
    return np.sin(arg) @ direction * (amplitude * _HEIGHT_PX)


def _waves(rng: np.random.Generator, cycles: float) -> np.ndarray:
    """Three random plane waves [3, 5] for `_wobble`, up to `cycles` per cap height."""
    return np.concatenate(
        [
            rng.uniform(-cycles, cycles, (3, 2)),  # cycles per cap height, per axis
            rng.uniform(0, 2 * math.pi, (3, 1)),
            rng.normal(0.0, 1.0 / math.sqrt(3), (3, 2)),
        ],
        axis=1,
    )


# Lower-case letters whose first stroke starts at the left of the x-height band, where a
# joined-up hand arrives from the baseline; an entry into the others (c, o, s, v, z, ...)
# would cross the letter or turn it into another (v into N).
_ENTRY = frozenset("eijmnpru")


def _joined_up(glyph: Glyph, char: str, rng: np.random.Generator) -> Glyph:
    """The letter with cursive tails: an entry stroke rising from the baseline into its first
    stroke (letters in `_ENTRY`), and an exit tail out of the stroke ending lowest right."""
    strokes = list(glyph)
    if char in _ENTRY:
        (sx, sy), rise = strokes[0][0], rng.uniform(0.1, 0.22)
        entry = np.float32([[sx - rise, 1.0], [sx - rise / 2, (1.0 + sy) / 2 + 0.04]])
        strokes[0] = np.concatenate([entry, strokes[0]])
    ends = [(float(st[-1, 0]), k) for k, st in enumerate(strokes) if 0.8 < st[-1, 1] < 1.05]
    if ends:  # descenders end below the line, dots above it: those get no exit tail
        k = max(ends)[1]
        (ex, ey), run = strokes[k][-1], rng.uniform(0.12, 0.22)
        tail = np.float32([[ex + run / 3, ey + 0.02], [ex + run, ey - 0.1]])
        strokes[k] = np.concatenate([strokes[k], tail])
    return tuple(strokes)


def draw_strokes(glyph: Glyph, char: str, writer: Writer, rng: np.random.Generator):
    """The pen paths of one character as this writer draws it this time.

    Returns:
      list of (points [P, 2] in pixels (x, y), radius [P]) per stroke.
    """
    jitter = {
        "slant": rng.normal(0.0, 0.06),
        "width": math.exp(rng.normal(0.0, 0.1)),
        "angle": math.radians(rng.normal(0.0, 3.0)),
    }
    waves = _waves(rng, 1.5)  # the hand's waviness along the strokes
    reshape = _waves(rng, 0.8)  # broad: moves whole loops and stroke ends
    if char.islower() and rng.random() < writer.cursive:
        glyph = _joined_up(glyph, char, rng)
    sloppy = writer.sloppiness * _HEIGHT_PX
    strokes = []
    for k, stroke in enumerate(glyph):
        path = _catmull_rom(stroke)
        if k:  # later strokes are placed relative to the first by eye, never exactly
            path = path + rng.normal(0.0, 0.03 * writer.sloppiness, 2)
        path = _resample(_shape(path, char, writer, jitter), _STEP_PX)
        path = path + _wobble(path, writer.wobble, waves)
        path = path + _wobble(path, writer.variability, reshape)
        # Pens land a little late and lift a little late: ends fall short or overshoot.
        start, end = rng.normal(0.0, 0.05, 2) * sloppy + np.array([0.0, 0.01 * sloppy])
        path = _adjust_ends(path, float(start), float(end))
        strokes.append((path, _pen_radius(path, writer, rng)))
    return strokes


def write_char(char: str, writer: Writer, rng: np.random.Generator):
    """`draw_strokes` of `char` in the writer's own letterform, or now and then (`writer.mix`)
    in another of its forms, as people switch between them."""
    forms = FORMS[char]
    form = writer.forms[CLASSES.index(char)]
    if rng.random() < writer.mix:
        form = int(rng.integers(len(forms)))
    return draw_strokes(forms[form], char, writer, rng)


def render_char(char: str, writer: Writer, rng: np.random.Generator) -> np.ndarray:
    """One character handwritten by `writer`, as a scan: uint8 [H, W], dark ink on paper."""
    strokes = write_char(char, writer, rng)
    points = np.concatenate([p for p, _ in strokes])
    radius = np.concatenate([r for _, r in strokes])
    border = float(radius.max()) + 4.0
    low = points.min(axis=0) - border
    shape = tuple(int(v) for v in np.ceil(points.max(axis=0) - low + border)[::-1])  # (H, W)
    ink = draw_pen((points - low)[:, ::-1], shape, radius)
    if writer.grain:  # pencil grain: ink missing in specks along the line
        ink = ink * (1.0 - writer.grain * rng.uniform(0.0, 0.7, ink.shape))
    paper = 1.0 - writer.ink * ink + rng.normal(0.0, 0.015, ink.shape)
    scan = np.clip(np.rint(paper * 255.0), 0, 255).astype(np.uint8)
    if writer.scan < _HEIGHT_PX:  # a coarse scan: each pixel averages the paper under it
        factor = writer.scan / _HEIGHT_PX
        size = (max(1, round(scan.shape[1] * factor)), max(1, round(scan.shape[0] * factor)))
        scan = np.asarray(Image.fromarray(scan).resize(size, Image.Resampling.BOX))
    return scan


@dataclass(frozen=True)
class HandwritingOptions:
    """How to build the handwriting dataset; all defaults live here.

    Attributes:
      size: image side in pixels (the PreprocessSpec size; other spec fields keep defaults).
      writers: how many synthetic writers; each writes every character `samples` times.
      samples: renderings per writer and character (each with its own wobble and ends).
      val_fraction, test_fraction: shares of the writers held out (the split is by writer).
      seed: seeds the writers and their drawings; the same seed gives the same dataset.
      workers: processes for drawing; 0 picks one per CPU (up to 8) for large sets.
    """

    size: int = 32
    writers: int = 200
    samples: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    workers: int = 0

    def __post_init__(self):
        PreprocessSpec(size=self.size)  # validates the size with the usual message
        check_range("writers", self.writers, 3, 100000)
        check_range("samples", self.samples, 1, 64)
        check_split_fractions(self.val_fraction, self.test_fraction)
        check_range("workers", self.workers, 0)


def writer_rng(seed: int, writer: int) -> np.random.Generator:
    """The generator of one writer: their style and drawings depend on nothing else."""
    return np.random.default_rng([seed, writer])


def render_writers(job: tuple[int, range, int, dict]) -> np.ndarray:
    """uint8 [len(writers) * 62 * samples, S, S]: every character of each writer, in order."""
    seed, writers, samples, spec_dict = job
    spec = PreprocessSpec.from_dict(spec_dict)
    out = []
    for w in writers:
        rng = writer_rng(seed, w)
        writer = sample_writer(rng)
        for char in CLASSES:
            out.extend(preprocess(render_char(char, writer, rng), spec) for _ in range(samples))
    return np.stack(out)


def split_writers(n: int, val: float, test: float, seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per writer, from a seeded permutation."""
    order = np.random.default_rng([seed, 1 << 20]).permutation(n)
    n_test, n_val = round(n * test), round(n * val)
    split = np.zeros(n, np.uint8)
    split[order[:n_test]] = 2
    split[order[n_test : n_test + n_val]] = 1
    return split


def build_handwriting_dataset(
    out: str | os.PathLike, options: HandwritingOptions | None = None, **kw
) -> Path:
    """Builds the handwriting dataset cache at `out` (replaced atomically if it exists).

    Args:
      out: the cache directory to write.
      options: a HandwritingOptions; keyword arguments override its fields.

    Returns:
      The path of the cache.
    """
    opts = dataclasses.replace(options or HandwritingOptions(), **kw)
    spec = PreprocessSpec(size=opts.size)
    workers = opts.workers or (min(os.cpu_count() or 1, 8) if opts.writers >= 200 else 1)
    chunk = max(1, math.ceil(opts.writers / (4 * workers)))
    jobs = [
        (opts.seed, range(i, min(i + chunk, opts.writers)), opts.samples, spec.to_dict())
        for i in range(0, opts.writers, chunk)
    ]
    if workers == 1:
        rendered = [render_writers(job) for job in jobs]
    else:
        # "spawn": forking a process that has imported JAX (the trainer) can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            rendered = list(pool.map(render_writers, jobs))
    per_writer = len(CLASSES) * opts.samples
    labels = np.tile(np.repeat(np.arange(len(CLASSES)), opts.samples), opts.writers)
    groups = np.repeat(np.arange(opts.writers), per_writer)
    splits = split_writers(opts.writers, opts.val_fraction, opts.test_fraction, opts.seed)
    meta = {
        "source": "handwriting",
        "preprocess": spec.to_dict(),
        "group_names": [f"writer {w}" for w in range(opts.writers)],
        "split_by": "writer",
        "writers": opts.writers,
        "samples": opts.samples,
        "seed": opts.seed,
    }
    return write_cache(out, np.concatenate(rendered), labels, groups, splits[groups], meta)
