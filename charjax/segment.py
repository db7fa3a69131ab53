"""Finding the glyphs of a text image: ink, lines, glyph groups and where a group may be cut.

    ink = text_ink(image)                    # charjax.preprocess's ink detection, [H, W] in 0-1,
                                             # ruled lines taken out
    for top, bottom in find_lines(ink > t):  # bands of rows, by horizontal projection
        groups = find_groups(ink, mask, top, bottom)   # connected components, dots joined

A group is one connected piece of ink with the small parts that sit above or below it (the dots
of i and j, a broken bar), so a printed glyph is one group. Touching glyphs (and a word of
joined script) are one group too; `cut_columns` lists the columns where it may be cut, the
thin places between letters, and `charjax.read` chooses among the cuts with the classifier.
Everything here is numpy and `scipy.ndimage`; the classifier is not involved.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from charjax.preprocess import despeckle, ink_map, to_grey


@dataclass(frozen=True)
class SegmentConfig:
    """How glyphs are found; all lengths are fractions of the line's typical glyph height.

    Attributes:
      threshold: a pixel is ink above this fraction of the ink range (as in PreprocessSpec;
        higher thresholds break the hairlines of high-contrast serif faces).
      max_side: images with a longer side are scaled down to it first (a phone photo of a
        note is 4000 px; the classifier sees 32 px glyphs, so detail past this is wasted).
      speck: groups smaller than this (both sides) are noise or punctuation, dropped.
      flat: groups flatter than this are dashes, underlines or dots on the baseline, dropped.
      min_cut_gap: cut candidates closer than this to each other or to a group's ends are
        dropped (no glyph is that narrow once its stroke is counted).
      thin_cut: a column is thin enough to cut where its ink is at most this many stroke
        widths (a connecting stroke crossed at a slant is up to about twice one width).
    """

    threshold: float = 0.2
    max_side: int = 3000
    speck: float = 0.12
    flat: float = 0.22
    min_cut_gap: float = 0.18
    thin_cut: float = 2.2


@dataclass(frozen=True)
class Group:
    """Connected ink of one or more glyphs, in image coordinates (half-open boxes).

    Attributes:
      box: (x0, y0, x1, y1) of the group's ink.
      mask: bool [y1 - y0, x1 - x0], the group's own ink (not its neighbours').
      cuts: columns (absolute x) where the group may be cut between letters, left to right.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    cuts: tuple[int, ...] = ()

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def text_ink(image, polarity: str = "auto", max_side: int = SegmentConfig.max_side,
             threshold: float = SegmentConfig.threshold):  # fmt: skip
    """Ink strength float32 [H, W] in [0, 1] of a text image (dark-on-light or the reverse),
    with the same ink detection and despeckling (strokes above `threshold`) as
    `charjax.preprocess`; large images are scaled down. Unlike
    a single glyph's, a page's paper is measured locally where the light is uneven (a photo
    of a note): a page has room for the blocks that measure it, and a glyph image is mostly
    stroke.

    Returns:
      (ink, scale): scale multiplies ink coordinates back into the image's pixels.
    """
    grey = to_grey(image)
    scale = max(grey.shape) / max_side
    if scale > 1:
        size = (round(grey.shape[1] / scale), round(grey.shape[0] / scale))
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BOX))
    ink = despeckle(ink_map(grey, polarity, even_light=True), threshold)
    return without_rules(ink), max(scale, 1.0)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in a 1-D bool array, as half-open (start, end) pairs, in order."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


# A rule is ink running along rows for at least this share of the image's width, in a band
# at most `RULE_THICK` of the image's height thick unless the image is a line (twice as wide as
# high or more): the bar of a T cropped tight spans the image too, but is thicker than that.
RULE_SPAN, RULE_THICK = 0.95, 0.02


def without_rules(ink: np.ndarray) -> np.ndarray:
    """`ink` [H, W] with ruled lines taken out: ink that runs along rows from edge to edge, as
    a notebook's lines, a form's baseline or an underline do (`RULE_SPAN`, `RULE_THICK`).
    A stroke that crosses a rule keeps its ink there; a glyph sitting on one loses the rows
    it shares with it.
    """
    h, w = ink.shape
    span = max(2, int(RULE_SPAN * w))
    rows = np.flatnonzero((ink > 0).sum(axis=1) >= span)  # only these can hold such a run
    if rows.size == 0:
        return ink
    # A grey opening along rows: the ink of runs at least `span` long, and nothing else.
    rule = np.zeros_like(ink)
    rule[rows] = ndimage.maximum_filter1d(
        ndimage.minimum_filter1d(ink[rows], span, axis=1), span, axis=1
    )
    bands = [
        (a, b) for a, b in _runs(rule.max(axis=1) > 0) if w >= 2 * h or b - a <= RULE_THICK * h
    ]
    out = ink.copy()
    for a, b in bands:
        out[a:b] -= rule[a:b]
        # A stroke crossing the rule is bridged: a vertical closing twice as tall as the rule
        # fills its rows where the stroke has ink both above and below them.
        top, bottom = max(0, 2 * a - b), min(h, 2 * b - a)
        near = out[top:bottom]
        reach = 2 * (b - a) + 1
        closed = ndimage.minimum_filter1d(
            ndimage.maximum_filter1d(near, reach, axis=0), reach, axis=0
        )
        out[a:b] = np.maximum(out[a:b], closed[a - top : b - top] * (rule[a:b] > 0))
    return out


def find_lines(mask: np.ndarray) -> list[tuple[int, int]]:
    """Row bands (top, bottom) holding text lines, top to bottom, by horizontal projection.

    A thin band close to a taller one (a line of i-dots and accents above lowercase) joins it.
    """
    bands = [[a, b] for a, b in _runs(mask.any(axis=1))]
    merged = True
    while merged and len(bands) > 1:
        merged = False
        tallest = max(b - a for a, b in bands)
        for i, (a, b) in enumerate(bands):
            if b - a >= 0.5 * tallest:
                continue
            # Join the nearer neighbour when the gap is small against that neighbour's height.
            gaps = []
            if i > 0:
                gaps.append((a - bands[i - 1][1], i - 1))
            if i + 1 < len(bands):
                gaps.append((bands[i + 1][0] - b, i + 1))
            gap, j = min(gaps)
            if gap < 0.6 * (bands[j][1] - bands[j][0]):
                bands[j] = [min(a, bands[j][0]), max(b, bands[j][1])]
                del bands[i]
                merged = True
                break
    return [(a, b) for a, b in bands]


def _components(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels)):
        box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        out.append((labels[sl] == i + 1, box))
    return out


def _joins(small, big) -> bool:
    """Whether part `small` belongs to glyph `big`: above or below it and mostly inside its
    columns, and clearly smaller (a dot, an accent, a broken-off bar)."""
    (sx0, sy0, sx1, sy1), (bx0, by0, bx1, by1) = small, big
    overlap = min(sx1, bx1) - max(sx0, bx0)
    apart = sy1 <= by0 + 0.15 * (by1 - by0) or sy0 >= by1 - 0.15 * (by1 - by0)
    smaller = (sy1 - sy0) < 0.6 * (by1 - by0)
    return overlap >= 0.5 * (sx1 - sx0) and apart and smaller


def _union(parts) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    x0 = min(b[0] for _, b in parts)
    y0 = min(b[1] for _, b in parts)
    x1 = max(b[2] for _, b in parts)
    y1 = max(b[3] for _, b in parts)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for m, (a, b, _, _) in parts:
        mask[b - y0 : b - y0 + m.shape[0], a - x0 : a - x0 + m.shape[1]] |= m
    return mask, (x0, y0, x1, y1)


def find_groups(
    mask: np.ndarray, top: int, bottom: int, config: SegmentConfig = SegmentConfig()
) -> list[Group]:
    """The glyph groups of one line band, left to right, with their cut candidates."""
    parts = [(m, (x0, y0 + top, x1, y1 + top)) for m, (x0, y0, x1, y1) in
             _components(mask[top:bottom])]  # fmt: skip
    if not parts:
        return []
    # Big parts first: each smaller part joins the biggest glyph it sits above or below.
    parts.sort(key=lambda p: -(p[1][3] - p[1][1]) * (p[1][2] - p[1][0]))
    owners: list[list] = []
    for part in parts:
        host = next((o for o in owners if _joins(part[1], o[0][1])), None)
        if host is None:
            owners.append([part])
        else:
            host.append(part)
    merged = [_union(o) for o in owners]
    ref = float(np.median([b[3] - b[1] for _, b in merged]))
    tall = float(max(b[3] - b[1] for _, b in merged))
    groups = []
    for m, box in sorted(merged, key=lambda g: g[1][0]):
        w, h = box[2] - box[0], box[3] - box[1]
        if max(w, h) < config.speck * tall or h < config.flat * ref:
            continue
        groups.append(Group(box, m, cut_columns(m, box[0], ref, config)))
    return groups


def stroke_width(mask: np.ndarray) -> float:
    """The typical stroke width: the median length of horizontal runs of ink."""
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1)[1], np.nonzero(edges == -1)[1]
    return float(np.median(ends - starts)) if starts.size else 1.0


def cut_columns(mask: np.ndarray, x0: int, ref: float, config: SegmentConfig) -> tuple[int, ...]:
    """Columns (absolute x) where a group may be cut: the thinnest column of each run of thin
    columns, away from the group's ends. Narrow groups (one glyph for sure) have none."""
    h, w = mask.shape
    min_gap = config.min_cut_gap * ref
    if w < 2 * min_gap or w < 0.5 * ref:
        return ()
    counts = mask.sum(axis=0)
    thin = counts <= config.thin_cut * stroke_width(mask)
    thin[: int(min_gap)] = False
    thin[w - int(min_gap) :] = False
    cuts: list[int] = []
    for a, b in _runs(thin):
        c = a + int(np.argmin(counts[a:b]))
        if not cuts or c - cuts[-1] >= min_gap:
            cuts.append(c)
    return tuple(x0 + c for c in cuts)


def piece(group: Group, ink: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """The grey image (float, 1 = paper) of a group's own ink between columns x0 and x1, with
    a border of paper so preprocessing finds the background; other groups' ink is left out."""
    gx0, gy0, _, _ = group.box
    sub = group.mask[:, x0 - gx0 : x1 - gx0]
    rows = np.flatnonzero(sub.any(axis=1))
    if rows.size == 0:
        return np.ones((4, 4), np.float32)
    sub = sub[rows[0] : rows[-1] + 1]
    strength = ink[gy0 + rows[0] : gy0 + rows[-1] + 1, x0:x1]
    grey = 1.0 - np.where(sub, strength, 0.0)
    pad = max(2, sub.shape[0] // 8)
    return np.pad(grey, pad, constant_values=1.0).astype(np.float32)


def piece_rows(group: Group, x0: int, x1: int) -> tuple[int, int]:
    """Top and bottom (absolute, half-open) of a group's ink between columns x0 and x1."""
    gx0, gy0, _, _ = group.box
    rows = np.flatnonzero(group.mask[:, x0 - gx0 : x1 - gx0].any(axis=1))
    if rows.size == 0:
        return group.box[1], group.box[3]
    return gy0 + int(rows[0]), gy0 + int(rows[-1]) + 1
