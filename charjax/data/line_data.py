"""Lines to train the line model on: rendered, normalised, and kept in one on-disk cache.

    cache = build_line_cache("~/.cache/charjax/lines-v1", LineDataOptions())
    cache["images"]   uint8 [N, LINE_HEIGHT, MAX_WIDTH]  ink bright on black, zero padded
    cache["widths"]   int32 [N]                          columns that hold the line
    cache["labels"]   int32 [N, MAX_LABEL]               `encode(text)`, zero padded
    cache["lengths"]  int32 [N]                          characters in the text
    cache["splits"]   uint8 [N]                          0 train, 1 val

Every line goes through `normalize_line`, the one function that turns a line's ink into the
model's input (the reader calls it too). Lines come from `charjax.data.lines`, with sources
disjoint from what the line benchmark reads: printed lines from the train-split font families
(printed and hand-print faces), written and joined lines from the handwriting synthesis's
train writers, and, when `hand_fonts` names some, lines set in those handwriting and cursive
fonts (`make hand-fonts` fetches 44 families from the npm registry). The cursive font families
of the benchmark's "script" kind are left out altogether, also from `hand_fonts`, so its script
lines stay unseen.
"""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from charjax.atomic import atomic_path
from charjax.data import lines
from charjax.errors import CharjaxError, check_range
from charjax.labels import CLASSES
from charjax.segment import text_ink

LINE_HEIGHT = 32
MAX_WIDTH = 512
MAX_LABEL = 48
VERSION = 1
# Output alphabet of the line model: index 0 is CTC's blank, then the 62 classes and a space.
ALPHABET = CLASSES + " "
BLANK = 0
# The ink fills these rows of LINE_HEIGHT; the rest is a margin, so strokes never touch it.
MARGIN = 2
# Kinds of training line; "fonts" are set in `LineDataOptions.hand_fonts`. The order seeds them.
TRAIN_KINDS = ("print", "hand", "joined", "fonts")


def encode(text: str) -> np.ndarray:
    """int32 [len(text)] label indices (1..63) of a text of the 62 classes and spaces."""
    bad = sorted(set(text) - set(ALPHABET))
    if bad:
        raise CharjaxError(f"cannot encode {''.join(bad)!r}: lines use only 0-9 A-Z a-z and spaces")
    return np.array([ALPHABET.index(c) + 1 for c in text], np.int32)


def decode(indices) -> str:
    """The text of label indices (blank and padding, 0, are skipped)."""
    return "".join(ALPHABET[i - 1] for i in indices if i > 0)


def line_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a line's ink (float [h, w], bright strokes), or None if blank."""
    rows = np.flatnonzero(ink.max(axis=1) > 0.1)
    cols = np.flatnonzero(ink.max(axis=0) > 0.1)
    return None if rows.size == 0 else (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)


def line_scale(box: tuple[int, int, int, int]) -> float:
    """Model columns per image column of a line whose ink spans `box`."""
    return (LINE_HEIGHT - 2 * MARGIN) / (box[3] - box[1])


def normalize_line(ink: np.ndarray) -> np.ndarray:
    """The model input of one line: float32 [LINE_HEIGHT, W] ink in [0, 1].

    The line's ink (float [h, w], bright strokes, as `charjax.segment.text_ink` gives) is cut
    to its bounding box (`line_box`) and scaled so that box spans LINE_HEIGHT - 2 * MARGIN
    rows, keeping its aspect; where a glyph sits within the line (x-height, cap height,
    descender) is kept, which is what tells `c` from `C`. W is the scaled width plus the
    margins; the caller pads it.
    """
    box = line_box(ink)
    if box is None:
        return np.zeros((LINE_HEIGHT, 2 * MARGIN), np.float32)
    x0, y0, x1, y1 = box
    width = max(1, round((x1 - x0) * line_scale(box)))
    image = Image.fromarray(np.rint(np.clip(ink[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8))
    scaled = image.resize((width, LINE_HEIGHT - 2 * MARGIN), Image.Resampling.LANCZOS)
    return np.pad(np.asarray(scaled, np.float32) / 255.0, MARGIN)


@dataclass(frozen=True)
class LineDataOptions:
    """What the line cache holds; all defaults live here.

    Attributes:
      lines: how many lines in all.
      shares: share of printed, hand-written and joined lines.
      hand_fonts: font files or folders of handwriting and cursive fonts to set lines in.
      hand_font_share: share of all lines set in `hand_fonts` (when it names any); the
        other kinds shrink in proportion.
      print_fonts: font files or folders of printed faces that the printed lines are set in
        too, beside the installed fonts of the train split.
      tokens: (min, max) words, numbers, dates or codes per line.
      val_fraction: lines kept for validation.
      seed: seeds the texts and the renderings.
    """

    lines: int = 40000
    # Mostly print: unseen font families are what the first recipe (24,000 lines, 40% print)
    # read worst (2.3% CER against 0.6% with this one, MODEL_CARD.md "Line model").
    shares: tuple[float, float, float] = (0.6, 0.2, 0.2)
    hand_fonts: tuple[str, ...] = ()
    hand_font_share: float = 0.15
    print_fonts: tuple[str, ...] = ()
    tokens: tuple[int, int] = (1, 3)
    val_fraction: float = 0.02
    seed: int = 0

    def __post_init__(self):
        check_range("hand_font_share", self.hand_font_share, 0.0, 1.0)
        # Paths as strings in a tuple: the options are hashed, cached and written as JSON.
        for name in ("hand_fonts", "print_fonts"):
            object.__setattr__(self, name, tuple(str(p) for p in getattr(self, name)))

    def kind_counts(self) -> dict[str, int]:
        """Lines of each kind ("fonts" for `hand_fonts`): `lines` in all."""
        share = self.hand_font_share if self.hand_fonts else 0.0
        kinds = zip(TRAIN_KINDS[:3], self.shares, strict=True)
        counts = {kind: round(self.lines * (1 - share) * part) for kind, part in kinds}
        return counts | {"fonts": round(self.lines * share)}


def _render_chunk(job: tuple) -> list[tuple[np.ndarray, str]]:
    """(normalised uint8 line, text) pairs of one chunk: `n` lines of `kind`, seeded."""
    kind, n, seed, tokens, hand_fonts, print_fonts = job
    if kind in ("print", "fonts"):
        if kind == "print":
            faces = lines.faces_for("print", "train") + lines.faces_for("hand-print", "train")
            faces += lines.faces_in(print_fonts) if print_fonts else ()
        else:
            faces = lines.faces_in(hand_fonts)
        samples = []
        for i in range(n):  # one at a time: a face may lack a bitmap at some size
            try:
                samples += lines.make_line_set("print", 1, seed * 1000 + i, faces=faces,
                                               tokens=tokens)  # fmt: skip
            except OSError:
                continue
    else:
        samples = lines.make_line_set(kind, n, seed, writers=lines.writers_of("train"),
                                      tokens=tokens)  # fmt: skip
    out = []
    for sample in samples:
        ink, _ = text_ink(sample.image, "auto", max_side=4096)
        line = normalize_line(ink)
        if line.shape[1] <= MAX_WIDTH and len(sample.text) <= MAX_LABEL:
            out.append((np.rint(line * 255).astype(np.uint8), sample.text))
    return out


def _jobs(options: LineDataOptions, chunk: int = 250) -> list:
    jobs = []
    for kind, total in options.kind_counts().items():
        k = TRAIN_KINDS.index(kind)
        for i, start in enumerate(range(0, total, chunk)):
            seed = options.seed * 1_000_003 + k * 10_007 + i
            jobs.append((kind, min(chunk, total - start), seed, options.tokens,
                         options.hand_fonts, options.print_fonts))  # fmt: skip
    return jobs


def build_line_cache(path, options: LineDataOptions = LineDataOptions(), workers: int = 2,
                     progress=None) -> dict[str, np.ndarray]:  # fmt: skip
    """Renders the lines of `options` into `path` (a directory, written atomically) unless a
    cache of the same options is there already; returns its arrays (memory-mapped)."""
    path = Path(path).expanduser()
    if (path / "meta.json").is_file():
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("options") == json.loads(json.dumps(asdict(options))):
            return load_line_cache(path)
    for given in (options.hand_fonts, options.print_fonts):
        if given and not lines.faces_in(given):
            raise CharjaxError(f"no usable font in {', '.join(given)}")
    pairs = []
    for chunk in _render(_jobs(options), workers):
        pairs.extend(chunk)
        if progress:
            progress(len(chunk))
    arrays = _pack(pairs, options)
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        meta = {"version": VERSION, "options": asdict(options), "count": len(pairs)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return load_line_cache(path)


def _render(jobs: list, workers: int):
    """The rendered chunks of `jobs`, in order: in this process for one worker, else in
    spawned ones (a fork of a process whose JAX threads run can deadlock)."""
    if workers == 1:
        yield from map(_render_chunk, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_render_chunk, jobs)


def _pack(pairs: list[tuple[np.ndarray, str]], options: LineDataOptions) -> dict:
    n = len(pairs)
    images = np.zeros((n, LINE_HEIGHT, MAX_WIDTH), np.uint8)
    labels = np.zeros((n, MAX_LABEL), np.int32)
    widths, lengths = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for i, (image, text) in enumerate(pairs):
        images[i, :, : image.shape[1]] = image
        widths[i], lengths[i] = image.shape[1], len(text)
        labels[i, : len(text)] = encode(text)
    rng = np.random.default_rng([options.seed, 7])
    splits = (rng.random(n) < options.val_fraction).astype(np.uint8)
    return {"images": images, "widths": widths, "labels": labels, "lengths": lengths,
            "splits": splits}  # fmt: skip


def load_line_cache(path) -> dict[str, np.ndarray]:
    """The arrays of a line cache (images memory-mapped; nothing is unpickled)."""
    path = Path(path).expanduser()
    names = ("images", "widths", "labels", "lengths", "splits")
    if not all((path / f"{name}.npy").is_file() for name in names):
        raise CharjaxError(f"{path} is not a line cache (build one with `charjax train-lines`)")
    return {name: np.load(path / f"{name}.npy", mmap_mode="r" if name == "images" else None,
                          allow_pickle=False) for name in names}  # fmt: skip
