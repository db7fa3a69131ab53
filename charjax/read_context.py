"""Context for reading a line: case from the line's geometry, look-alikes from neighbours.

Both act on the classifier's probabilities [N, 62] of a line's glyphs, left to right, before
the text is chosen (`charjax.read` calls them in this order):

- `line_geometry`: baseline, x-height and cap height of the line, each a median over the glyphs
  whose shape already shows where they sit (`a e m n r g q` top at the x-line; capitals such as
  `A B E R` and the ascenders `b d h k l` at the cap line; descenders left out of the baseline).
- `apply_case`: a glyph of a same-shape pair (c/C o/O s/S u/U v/V w/W x/X z/Z p/P y/Y) moves
  the pair's probability to the case its height above the baseline says.
- `best_sequence`: per word, the most likely characters under the classifier times a small
  hand-set prior on which character class (digit, upper, lower) follows which.
"""

from dataclasses import dataclass

import numpy as np

from charjax.labels import CLASSES, FOLD_TABLE, LOOKALIKE_GROUPS

# Lower-case letters whose capital has the same shape (only the size differs).
CASE_PAIRS = "cosuvwxzpy"
# Glyphs whose shape shows their vertical extent, when the classifier reads them as such.
_X_TOPS = "aemnrgq"  # top at the x-line
_CAP_TOPS = "ABDEFGHLMNRTbdhkl"  # top at the cap line (ascenders rise about as high)
_DESCENDERS = "gjpqyQJ"  # bottom below the baseline (in some fonts, Q and J)
# A glyph's measured height moves this share of its pair's probability to the chosen case:
# not all of it, so a classifier that is sure of a shape difference still has a say.
_CASE_WEIGHT = 0.97

# Which character class follows which inside a word (rows: from digit, upper, lower), set by
# hand: a class mostly continues (2024, OXYGEN, valve), a capital often starts a lower-case
# word (Oxygen), lower to upper and letters to digits are rare but happen (codes like B8M5Z).
_TYPES = np.array([0 if c.isdigit() else 1 if c.isupper() else 2 for c in CLASSES])
_TRANSITIONS = np.log(np.array([[0.90, 0.07, 0.03],
                                [0.08, 0.60, 0.32],
                                [0.03, 0.03, 0.94]]))  # fmt: skip


@dataclass(frozen=True)
class LineGeometry:
    """Where a line's glyphs sit, in pixels (None where no glyph showed it)."""

    baseline: float | None
    x_height: float | None
    cap_height: float | None
    word_unit: float  # the length word gaps are measured in (the x-height, or its estimate)

    def as_dict(self) -> dict:
        def r(v):
            return None if v is None else round(float(v), 1)

        return {"baseline": r(self.baseline), "x_height": r(self.x_height),
                "cap_height": r(self.cap_height)}  # fmt: skip


def fold_probs(probs: np.ndarray) -> np.ndarray:
    """[N, 62] -> [N, 36]: digits, then each letter with both its cases summed."""
    return np.concatenate([probs[:, :10], probs[:, 10:36] + probs[:, 36:62]], axis=1)


def _shape_groups() -> np.ndarray:
    """[62, G] one-hot membership: the two cases of a letter, and the look-alikes of
    `LOOKALIKE_GROUPS` (0/O/o, 1/I/l, 5/S/s, 2/Z/z, ...), share a group."""
    group = FOLD_TABLE.copy()
    for chars in LOOKALIKE_GROUPS:
        members = [CLASSES.index(c) for c in chars]
        old = np.unique(group[members])
        group[np.isin(group, old)] = old[0]
    index = np.unique(group, return_inverse=True)[1]
    return np.eye(index.max() + 1, dtype=np.float32)[index]


_SHAPE_GROUPS = _shape_groups()


def glyph_scores(probs: np.ndarray) -> np.ndarray:
    """[N, 62] -> [N]: how surely each image is some one glyph, whichever of the look-alikes
    it is: the log of its most probable shape group's summed probability. A slice split
    between 0 and O is as much a glyph as one the model names outright; which of them it is,
    the line's context decides afterwards (`best_sequence`)."""
    return np.log((probs @ _SHAPE_GROUPS).max(axis=1, initial=0.0) + 1e-6)


def line_geometry(boxes, probs: np.ndarray) -> LineGeometry:
    """Baseline, x-height and cap height of a line from its glyph boxes and probabilities."""
    tops = np.array([b[1] for b in boxes], np.float32)
    bottoms = np.array([b[3] for b in boxes], np.float32)
    best = [CLASSES[i] for i in probs.argmax(axis=1)]
    sure = probs.max(axis=1) > 0.5
    sits = [c not in _DESCENDERS for c in best]
    baseline = float(np.median(bottoms[sits] if any(sits) else bottoms))
    heights = baseline - tops
    xs = [h for h, c, s in zip(heights, best, sure, strict=True) if s and c in _X_TOPS]
    caps = [h for h, c, s in zip(heights, best, sure, strict=True) if s and c in _CAP_TOPS]
    digits = [h for h, c, s in zip(heights, best, sure, strict=True) if s and c.isdigit()]
    if not caps and len(digits) >= 2 and np.std(digits) < 0.06 * np.mean(digits):
        # Lining figures stand at cap height; old-style ones (of varied heights) say nothing.
        caps = digits
    x_height = float(np.median(xs)) if xs else None
    cap_height = float(np.median(caps)) if caps else None
    if x_height and cap_height and x_height > 0.88 * cap_height:
        # Contradictory (a misread glyph): trust the side with more witnesses.
        x_height, cap_height = (None, cap_height) if len(caps) >= len(xs) else (x_height, None)
    unit = x_height or (0.7 * cap_height if cap_height else 0.6 * float(np.median(heights)))
    return LineGeometry(baseline, x_height, cap_height, max(unit, 1.0))


def word_breaks(gaps, unit: float, space: float) -> list[bool]:
    """Which gaps between neighbouring glyphs separate words.

    Writers and fonts space differently, so the threshold comes from the line itself when its
    gaps fall in two clear groups (letter gaps and word gaps: the best two-group split, whose
    group means differ at least twofold); otherwise a gap wider than `space` x-heights is a
    word break.
    """
    gaps = np.asarray(gaps, np.float32) / unit
    threshold = space
    if len(gaps) >= 3:
        order = np.sort(gaps)
        best, split = -1.0, None
        for i in range(1, len(order)):
            lo, hi = order[:i], order[i:]
            between = i * (len(order) - i) * (hi.mean() - lo.mean()) ** 2
            if between > best:
                best, split = between, (lo, hi)
        lo, hi = split
        if hi.mean() >= 2.0 * max(lo.mean(), 0.05) and hi.min() >= 0.5 * space:
            threshold = float(np.clip((lo.max() + hi.min()) / 2, 0.5 * space, 2.0 * space))
    return [bool(g > threshold) for g in gaps]


def _is_upper(height: float, geometry: LineGeometry) -> bool | None:
    """Whether a same-shape glyph of this height is a capital; None if the line cannot say."""
    xh, ch = geometry.x_height, geometry.cap_height
    if xh and ch:
        return height > np.sqrt(xh * ch)
    if ch:
        return height > 0.84 * ch
    if xh:
        return height > 1.2 * xh
    return None


def _split_heights(heights) -> float | None:
    """For a line with no witnesses of its x-height or cap height (`swiss COWS`): the height
    between the short and the tall same-shape glyphs, if they differ clearly."""
    order = np.sort(np.asarray(heights, np.float32))
    if len(order) < 2 or order[0] <= 0:
        return None
    ratios = order[1:] / order[:-1]
    k = int(ratios.argmax())
    return float(np.sqrt(order[k] * order[k + 1])) if ratios[k] >= 1.2 else None


def apply_case(probs: np.ndarray, boxes, geometry: LineGeometry) -> np.ndarray:
    """Moves each same-shape glyph's pair probability to the case its height says."""
    out = probs.copy()
    folded = fold_probs(probs).argmax(axis=1)
    letters = [CLASSES[36 + f - 10] if f >= 10 else "" for f in folded]
    paired = [i for i, c in enumerate(letters) if c and c in CASE_PAIRS]
    heights = {i: geometry.baseline - boxes[i][1] for i in paired}
    split = None
    if geometry.x_height is None and geometry.cap_height is None:
        split = _split_heights(list(heights.values()))
    for i in paired:
        letter = letters[i]
        upper = heights[i] > split if split is not None else _is_upper(heights[i], geometry)
        if upper is None:
            continue
        lo, up = CLASSES.index(letter), CLASSES.index(letter.upper())
        total = probs[i, lo] + probs[i, up]
        out[i, up] = total * (_CASE_WEIGHT if upper else 1 - _CASE_WEIGHT)
        out[i, lo] = total - out[i, up]
    return out


def best_sequence(probs: np.ndarray, breaks, weight: float, k: int = 5) -> list[str]:
    """The characters of a line: per word (split where `breaks[i]` is true, between glyph i
    and i + 1), the best path over each glyph's top-k under the classifier and the prior."""
    chars: list[str] = []
    start = 0
    for end in [i + 1 for i, b in enumerate(breaks) if b] + [len(probs)]:
        chars.extend(_viterbi(probs[start:end], weight, k))
        start = end
    return chars


def _viterbi(probs: np.ndarray, weight: float, k: int) -> list[str]:
    cands = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # [N, k]
    emit = np.log(np.take_along_axis(probs, cands, axis=1) + 1e-6)
    score, back = emit[0], []
    for t in range(1, len(probs)):
        trans = weight * _TRANSITIONS[_TYPES[cands[t - 1]][:, None], _TYPES[cands[t]][None, :]]
        total = score[:, None] + trans  # [k prev, k now]
        back.append(total.argmax(axis=0))
        score = total.max(axis=0) + emit[t]
    path = [int(score.argmax())]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    path.reverse()
    return [CLASSES[cands[t, j]] for t, j in enumerate(path)]
