"""Reading words and lines: `Reader(charjax.load()).read(image).text`.

A glyph classifier alone cannot tell `c` from `C` (it sees each glyph cropped to its ink) and
mixes up `0`/`O`, `1`/`l`, `5`/`S`; in a line, neighbours settle both. The reader:

    image --charjax.segment--> lines --> glyph groups --cut search--> glyphs
          --classifier (one batch)--> probabilities --line geometry--> case
          --character-class prior over each word--> text (spaces from the gaps)

1. **Segmentation** (`charjax.segment`): ink as `charjax.preprocess` finds it, lines by
   horizontal projection, connected components with i/j dots joined to their stems.
2. **Cut search**: a group that may hold several glyphs (touching print, a word of joined
   script) has cut candidates at its thin columns. Every run of up to `max_span` consecutive
   slices is a glyph hypothesis; all hypotheses of the image go through the ONE preprocessing
   function and the classifier in one batch, and a dynamic programme picks the cuts whose
   glyphs the classifier is surest of (case-folded, so case does not sway the cuts).
3. **Case from geometry**: baseline, x-height and cap height are estimated from glyphs whose
   case shows in their shape (a, e, n, r and A, B, E, R, b, d, h, ...); a glyph of a same-shape
   pair (c/C o/O s/S u/U v/V w/W x/X z/Z p/P y/Y) takes the case its height says.
4. **Look-alikes by neighbours**: a Viterbi pass over each word's top-k candidates with a small
   hand-set prior on character classes (digit, upper, lower) following each other, so `0` in
   `2024` and `O` in `OXYGEN` come out right while a confident glyph keeps its reading.

With a line model (`Reader(..., lines=LineModel)`, the "lines" engine of `make_reader`), steps
2-4 are replaced: each line found in step 1 is read whole by `charjax.line_model`, which sees
case and neighbours itself.
"""

from dataclasses import dataclass, field

import numpy as np

from charjax.data.line_data import MARGIN, line_box, line_scale
from charjax.errors import CharjaxError
from charjax.labels import CLASSES, parse_charset, restrict
from charjax.line_model import LineModel, LineRead, load_line_model
from charjax.models.line import STRIDE
from charjax.preprocess import NO_INK, has_ink, load_image, preprocess
from charjax.read_context import (
    LineGeometry,
    apply_case,
    best_sequence,
    glyph_scores,
    line_geometry,
    word_breaks,
)
from charjax.segment import (
    Group,
    SegmentConfig,
    find_groups,
    find_lines,
    piece,
    piece_rows,
    text_ink,
)

ENGINES = ("lines", "glyphs")
DEFAULT_ENGINE = "lines"
# A line model reads case from the whole line; it measures no geometry of its own.
_NO_GEOMETRY = LineGeometry(None, None, None, 0.0)


@dataclass(frozen=True)
class ReadConfig:
    """How a Reader reads; all defaults live here.

    Attributes:
      segment: how glyphs are found (`charjax.segment.SegmentConfig`).
      top_k: guesses kept per glyph (in the JSON, and for the word-level prior).
      max_span: most cut slices one glyph may span in the cut search.
      max_aspect: widest glyph in the cut search, in cap heights (a written `m` can reach
        about 1.3).
      glyph_bonus: log-score added per glyph in the cut search; above zero favours more,
        narrower glyphs.
      space: a gap wider than this many x-heights separates words, unless the line's own
        gaps show where its words part (`read_context.word_breaks`).
      prior: weight of the character-class prior against the classifier's log-probabilities.
      max_ink: above this share of ink pixels an image is a photo or a drawing, not text.
      max_soft: above this share of soft (mid-tone) ink it is a photo: ink strokes go from
        paper to full ink within a pixel or two, a photo's shapes fade in and out.
      min_confidence: below this mean confidence over the glyphs it is not text either.
    """

    segment: SegmentConfig = field(default_factory=SegmentConfig)
    top_k: int = 5
    max_span: int = 4
    max_aspect: float = 1.5
    glyph_bonus: float = 0.0
    space: float = 0.36
    prior: float = 1.0
    max_ink: float = 0.4
    max_soft: float = 0.72
    min_confidence: float = 0.35


@dataclass(frozen=True)
class Glyph:
    """One read character: its box in the image (x0, y0, x1, y1) and its top-k, best first."""

    char: str
    box: tuple[int, int, int, int]
    chars: tuple[str, ...]
    probs: tuple[float, ...]

    @property
    def confidence(self) -> float:
        return self.probs[0] if self.char == self.chars[0] else 0.0

    def as_dict(self) -> dict:
        return {
            "char": self.char,
            "box": list(self.box),
            "confidence": round(self.confidence, 4),
            "top": [
                {"char": c, "prob": round(p, 4)}
                for c, p in zip(self.chars, self.probs, strict=True)
            ],
        }


@dataclass(frozen=True)
class TextLine:
    """One line: its text, box, glyphs (spaces are gaps, not glyphs) and measured geometry."""

    text: str
    box: tuple[int, int, int, int]
    glyphs: tuple[Glyph, ...]
    geometry: LineGeometry

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "box": list(self.box),
            "geometry": self.geometry.as_dict(),
            "glyphs": [g.as_dict() for g in self.glyphs],
        }


@dataclass(frozen=True)
class Reading:
    """What an image says: `text` (lines joined by newlines), the lines, and a `note` when
    there was nothing to read (no ink, or a picture rather than text)."""

    text: str
    lines: tuple[TextLine, ...] = ()
    note: str = ""

    def as_dict(self) -> dict:
        out = {"text": self.text, "lines": [line.as_dict() for line in self.lines]}
        return out | ({"note": self.note} if self.note else {})


@dataclass
class _Hypotheses:
    """Every glyph hypothesis of an image: per group, the (i, j) slice spans and their rows."""

    images: list = field(default_factory=list)
    spans: list = field(default_factory=list)  # per group: {(i, j): row in images}


class Reader:
    """Reads text with a trained character classifier (a `charjax.predict.Predictor`).

    Args:
      predictor: the classifier (`charjax.load(...)`).
      config: a ReadConfig.
      charset: read only these characters (`charjax.labels.parse_charset`: a name such as
        digits or upper, or characters and ranges such as 0-9A-F); None reads all 62.
      lines: a `charjax.line_model.LineModel`: each line found is read whole by it (the
        "lines" engine) instead of being cut into glyphs for the classifier; the classifier's
        recorded polarity still decides what is ink.
    """

    def __init__(
        self,
        predictor,
        config: ReadConfig = ReadConfig(),
        charset: str | None = None,
        lines: LineModel | None = None,
    ):
        self.predictor = predictor
        self.config = config
        self.allowed = None if charset is None else parse_charset(charset)
        self.lines = lines

    def read(self, image) -> Reading:
        """Reads one image: a PIL image, an array, or a file path."""
        if isinstance(image, str) or hasattr(image, "__fspath__"):
            image = load_image(image)
        cfg = self.config
        seg = cfg.segment
        ink, scale = text_ink(image, self.predictor.spec.polarity, seg.max_side, seg.threshold)
        mask = ink > cfg.segment.threshold
        if not mask.any():
            return Reading("", note="no text found (the image is blank)")
        if not has_ink(np.rint(ink * 255).astype(np.uint8)):  # a dot or a speck, read as `o`
            return Reading("", note=f"no text found ({NO_INK})")
        if mask.mean() > cfg.max_ink:
            return Reading("", note=f"no text found: {mask.mean():.0%} of the image is ink, "
                                    "so it looks like a picture or a photo, not text")  # fmt: skip
        soft = np.count_nonzero((ink > 0.1) & (ink < 0.6)) / np.count_nonzero(ink > 0.1)
        if soft > cfg.max_soft:
            return Reading("", note="no text found: the image has the soft tones of a photo, "
                                    "not the sharp edges of ink")  # fmt: skip
        bands = find_lines(mask)
        if self.lines is not None:
            reads = self.lines.read([ink[top:bottom] for top, bottom in bands], self.allowed)
            pairs = zip(bands, reads, strict=True)
            return self._finish([self._read_band(ink[t:b], t, r, scale) for (t, b), r in pairs])
        groups = [find_groups(mask, top, bottom, cfg.segment) for top, bottom in bands]
        hyps = self._hypotheses(groups, ink)
        probs = self.predictor.probabilities(
            np.stack([preprocess(im, self.predictor.spec) for im in hyps.images])
        ) if hyps.images else np.zeros((0, len(CLASSES)), np.float32)  # fmt: skip
        if self.allowed is not None:
            probs = restrict(probs, self.allowed)
        score = glyph_scores(probs)  # whether a slice is a glyph, not which look-alike
        lines, k = [], 0
        for line_groups in groups:
            chosen = []
            for group in line_groups:
                chosen.extend(self._cut(group, hyps.spans[k], score))
                k += 1
            if chosen:
                lines.append(self._line(chosen, probs, scale))
        return self._finish(lines)

    def _finish(self, lines: list) -> Reading:
        lines = [line for line in lines if line.glyphs]
        if not lines:
            return Reading("", note="no text found")
        confidence = np.mean([g.probs[0] for line in lines for g in line.glyphs])
        if confidence < self.config.min_confidence:
            return Reading("", note=f"no text found: the marks do not look like characters "
                                    f"(mean confidence {confidence:.0%})")  # fmt: skip
        return Reading("\n".join(line.text for line in lines), tuple(lines))

    def _read_band(self, band: np.ndarray, top: int, read: LineRead, scale: float) -> TextLine:
        """A TextLine of the line model's reading of one band. CTC marks a character at one
        or two output steps, not its extent, so each glyph's box reaches halfway to its
        neighbours (at most half the line's usual pitch either side), over the band's ink rows."""
        box = line_box(band) or (0, 0, band.shape[1], band.shape[0])
        per_step = STRIDE / line_scale(box)  # image columns per output step
        centres = np.array([box[0] + ((a + b + 1) / 2 * STRIDE - MARGIN) * per_step / STRIDE
                            for a, b in read.steps])  # fmt: skip
        pitch = np.diff(centres)
        half = float(np.median(pitch)) / 2 if len(pitch) else (box[3] - box[1]) / 3
        glyphs = []
        for i, (char, row) in enumerate(zip(read.text, read.probs, strict=True)):
            if char == " ":
                continue
            left = max(centres[i] - half, (centres[i - 1] + centres[i]) / 2 if i else box[0])
            right = centres[i] + half
            if i + 1 < len(centres):
                right = min(right, (centres[i] + centres[i + 1]) / 2)
            left, right = max(left, box[0]), min(right, box[2])
            order = np.argsort(-row, kind="stable")[: self.config.top_k]
            scaled = tuple(int(round(v * scale)) for v in (left, top + box[1], right, top + box[3]))
            glyphs.append(Glyph(char, scaled, tuple(CLASSES[j] for j in order),
                                tuple(float(row[j]) for j in order)))  # fmt: skip
        x0, y0, x1, y1 = (int(round(v * scale)) for v in (box[0], top + box[1], box[2],
                                                          top + box[3]))  # fmt: skip
        return TextLine(" ".join(read.text.split()), (x0, y0, x1, y1), tuple(glyphs), _NO_GEOMETRY)

    def _hypotheses(self, groups: list[list[Group]], ink: np.ndarray) -> _Hypotheses:
        """The glyph hypotheses of every group: each slice between its cuts, and each run of
        up to `max_span` slices that is not too wide for one glyph."""
        hyps = _Hypotheses()
        for line_groups in groups:
            # About the cap height: most groups are glyphs, the taller ones capitals.
            ref = float(np.percentile([g.height for g in line_groups], 80)) if line_groups else 1.0
            for group in line_groups:
                cols = (group.box[0], *group.cuts, group.box[2])
                n = len(cols) - 1
                wanted = set()
                widest = self.config.max_aspect * ref
                for i in range(n):
                    for j in range(i + 1, min(i + self.config.max_span, n) + 1):
                        if j > i + 1 and cols[j] - cols[i] > widest:
                            break
                        wanted.add((i, j))
                spans = {}
                for i, j in sorted(wanted):
                    spans[(i, j)] = len(hyps.images)
                    hyps.images.append(piece(group, ink, cols[i], cols[j]))
                hyps.spans.append(spans)
        return hyps

    def _cut(self, group: Group, spans: dict, score: np.ndarray) -> list:
        """The best split of a group into glyphs: [(group, x0, x1, row in probs)], by a
        dynamic programme over the cut candidates maximising the summed glyph scores."""
        cols = (group.box[0], *group.cuts, group.box[2])
        n = len(cols) - 1
        best = np.full(n + 1, -np.inf)
        best[0], back = 0.0, [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j):
                if (i, j) not in spans:
                    continue
                total = best[i] + score[spans[(i, j)]] + self.config.glyph_bonus
                if total > best[j]:
                    best[j], back[j] = total, i
        out, j = [], n
        while j > 0:
            i = back[j]
            out.append((group, cols[i], cols[j], spans[(i, j)]))
            j = i
        return out[::-1]

    def _line(self, chosen: list, probs: np.ndarray, scale: float) -> TextLine:
        boxes = []
        for group, x0, x1, _ in chosen:
            top, bottom = piece_rows(group, x0, x1)
            boxes.append((x0, top, x1, bottom))
        p = probs[[row for *_, row in chosen]]
        geometry = line_geometry(boxes, p)
        p = apply_case(p, boxes, geometry)
        gaps = [b[0] - a[2] for a, b in zip(boxes, boxes[1:], strict=False)]
        breaks = word_breaks(gaps, geometry.word_unit, self.config.space)
        chars = best_sequence(p, breaks, self.config.prior)
        glyphs, text = [], ""
        for i, (box, row, char) in enumerate(zip(boxes, p, chars, strict=True)):
            order = np.argsort(-row, kind="stable")[: self.config.top_k]
            scaled = tuple(int(round(v * scale)) for v in box)
            glyphs.append(Glyph(char, scaled, tuple(CLASSES[j] for j in order),
                                tuple(float(row[j]) for j in order)))  # fmt: skip
            text += (" " if i and breaks[i - 1] else "") + char
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[2] for b in boxes)
        y1 = max(b[3] for b in boxes)
        box = tuple(int(round(v * scale)) for v in (x0, y0, x1, y1))
        return TextLine(text, box, tuple(glyphs), geometry)


def make_reader(checkpoint=None, charset: str | None = None, engine: str = DEFAULT_ENGINE,
                lines_model=None) -> Reader:  # fmt: skip
    """A Reader with the classifier at `checkpoint` (None: the bundled one) and, for the
    "lines" engine, the line model at `lines_model` (None: the bundled one)."""
    from charjax.predict import load  # predict imports this module

    if engine not in ENGINES:
        raise CharjaxError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    lines = load_line_model(lines_model) if engine == "lines" else None
    return Reader(load(checkpoint), charset=charset, lines=lines)
