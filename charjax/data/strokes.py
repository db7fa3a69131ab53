"""Stroke-style rendering: a font glyph redrawn the way a person draws it with a mouse.

A glyph outline says little about a mouse drawing: fonts vary stroke contrast, serifs and
weight, while a drawing is one line of constant width following the letter's skeleton. So the
glyph is thinned to its one-pixel skeleton (Zhang-Suen), the skeleton is bent by a smooth random
displacement (a hand does not follow the ideal path), and it is redrawn with a round pen of
random width:

    glyph mask --thin--> skeleton --jitter--> points --round pen--> dark ink on white paper

The result goes through `charjax.preprocess.preprocess` like every other image. Everything is
numpy plus `scipy.ndimage` (already installed with JAX); a glyph costs a few milliseconds.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Zhang-Suen looks at the 8 neighbours in this order: N, NE, E, SE, S, SW, W, NW (p2 .. p9).
_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


@dataclass(frozen=True)
class StrokeStyle:
    """How a thinned glyph is redrawn. All lengths are fractions of the font size (em).

    Attributes:
      pen: range of the round pen's diameter. The GUI's default pen (18 px on a 400 px canvas,
        glyphs drawn 150-300 px tall) is 6-12% of the glyph height; a glyph is ~0.7 em.
      jitter: standard deviation of the smooth displacement of the skeleton.
      jitter_grid: the displacement is interpolated from a random grid this many cells across;
        few cells give the slow wobble of a hand, not pixel noise.
      pen_wobble: relative change of pen width along the stroke (pressure, speed).
    """

    pen: tuple[float, float] = (0.03, 0.13)
    jitter: float = 0.025
    jitter_grid: int = 3
    pen_wobble: float = 0.25


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: bool [H, W] -> bool [H, W] skeleton, one pixel wide, connected.

    Each pass removes, in two sub-steps, the boundary pixels whose removal keeps the shape
    connected (exactly one 0 -> 1 transition around them) and are not stroke ends (at least two
    neighbours). Repeats until nothing changes.
    """
    img = np.pad(mask.astype(np.uint8), 1)
    h, w = mask.shape
    while True:
        changed = False
        for step in (0, 1):
            p = [img[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _NEIGHBOURS]
            count = sum(q.astype(np.int32) for q in p)
            transitions = sum(
                ((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8)
            )
            n, e, s, west = p[0], p[2], p[4], p[6]
            if step == 0:
                side = (n * e * s == 0) & (e * s * west == 0)
            else:
                side = (n * e * west == 0) & (n * s * west == 0)
            centre = img[1:-1, 1:-1]
            remove = (centre == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                centre[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def skeleton_points(skeleton: np.ndarray) -> np.ndarray:
    """Points along a skeleton, float32 [P, 2] (row, col), about half a pixel apart.

    Every skeleton pixel, plus the midpoint to each neighbouring skeleton pixel, so a pen
    drawn at each point leaves no gaps after the points are pushed apart by the jitter.
    """
    pixels = np.argwhere(skeleton).astype(np.float32)
    mids = []
    padded = np.pad(skeleton, 1)
    h, w = skeleton.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbour pair once
        other = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        ends = np.argwhere(skeleton & other).astype(np.float32)
        mids.append(ends + np.float32([dy / 2, dx / 2]))
    return np.concatenate([pixels, *mids])


def _smooth_field(rng: np.random.Generator, points: np.ndarray, shape, grid: int, std: float):
    """A random displacement [P, 2] at `points`, bilinear from a (grid+1)^2 lattice."""
    lattice = rng.normal(0.0, std, size=(2, grid + 1, grid + 1))
    scaled = points / np.maximum(np.float32(shape) - 1, 1) * grid  # lattice coordinates
    return np.stack(
        [ndimage.map_coordinates(lattice[a], scaled.T, order=1, mode="nearest") for a in (0, 1)],
        axis=1,
    )


def draw_pen(points: np.ndarray, shape, radius: np.ndarray) -> np.ndarray:
    """Paints a round pen of per-point `radius` at each point: float32 [H, W] ink in [0, 1].

    The ink at a pixel is set by its distance to the nearest point (one Euclidean distance
    transform), with a one-pixel soft edge for antialiasing.
    """
    h, w = shape
    idx = np.clip(np.rint(points).astype(np.int64), 0, [h - 1, w - 1])
    empty = np.ones((h, w), bool)
    empty[idx[:, 0], idx[:, 1]] = False
    radii = np.zeros((h, w), np.float32)
    # Where two points land on one pixel keep the larger pen.
    np.maximum.at(radii, (idx[:, 0], idx[:, 1]), radius.astype(np.float32))
    dist, (near_r, near_c) = ndimage.distance_transform_edt(empty, return_indices=True)
    return np.clip(radii[near_r, near_c] + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def stroke_glyph(
    mask: np.ndarray, em: float, rng: np.random.Generator, style: StrokeStyle = StrokeStyle()
) -> np.ndarray:
    """Redraws one glyph as a pen drawing.

    Args:
      mask: bool [H, W], the glyph's ink (drawn at font size `em` pixels, with some border).
      em: the font size in pixels; pen widths and jitter scale with it.
      rng: draws the pen width, wobble and displacement.
      style: the ranges they are drawn from.

    Returns:
      uint8 [H', W'] dark ink on white paper (H', W' add a border for the pen), like a scan of
      a drawing; all white if the mask is empty.
    """
    return draw_skeleton(thin(mask), em, rng, style)


def draw_skeleton(
    skeleton: np.ndarray, em: float, rng: np.random.Generator, style: StrokeStyle = StrokeStyle()
) -> np.ndarray:
    """`stroke_glyph` after thinning: one skeleton can be redrawn many times (cheaply)."""
    diameter = rng.uniform(*style.pen) * em
    radius = max(diameter / 2, 0.6)
    border = int(np.ceil(radius + 3 * style.jitter * em)) + 2
    shape = (skeleton.shape[0] + 2 * border, skeleton.shape[1] + 2 * border)
    points = skeleton_points(skeleton)
    if len(points) == 0:
        return np.full(shape, 255, np.uint8)
    shift = _smooth_field(rng, points, skeleton.shape, style.jitter_grid, style.jitter * em)
    wobble = _smooth_field(rng, points, skeleton.shape, style.jitter_grid, style.pen_wobble)
    radii = np.maximum(radius * (1.0 + wobble[:, 0]), 0.6)
    ink = draw_pen(points + shift + border, shape, radii)
    return np.rint(255.0 * (1.0 - ink)).astype(np.uint8)
