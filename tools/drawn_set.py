"""The drawn-glyph evaluation set: characters drawn on the GUI's own canvas by scripted strokes.

    python -m tools.drawn_set --out data/drawn       # from the repository root; then:
    charjax eval --data folder:data/drawn

What people draw in `charjax-gui` is a single line of constant width, painted by
`apps.canvas.Canvas`. This script makes such drawings without a person: the single-stroke
Hershey vector fonts (the `hershey-fonts` package, a dev dependency) give the pen paths, a
hand's wobble is added (a random slant and rotation, a slow waviness along each stroke, points
spaced like mouse events), and the paths are fed to `Canvas.begin_stroke / extend_stroke /
end_stroke` at several pen widths. The canvas pixels are saved as PNGs in the Chars74K folder
layout (Sample001 .. Sample062), so `charjax eval --data folder:PATH` reads them.

No training data comes from Hershey fonts (the font dataset reads TrueType/OpenType files), so
this set measures drawings of letter designs the model has not seen, in the GUI's rendering.
Runs offscreen (QT_QPA_PLATFORM=offscreen): no display needed.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from HersheyFonts import HersheyFonts
from PIL import Image

from charjax.atomic import atomic_path
from charjax.labels import CLASSES, sample_dir_name

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from charjax.apps.canvas import DEFAULT_SIZE, Canvas  # noqa: E402


@dataclass(frozen=True)
class DrawnSetOptions:
    """What to draw; all defaults live here.

    Attributes:
      faces: Hershey single-stroke fonts: sans (futural), roman (rowmans), script (scripts)
        and cursive, all "simplex", i.e. one line per stroke, as a mouse draws.
      pen_widths: canvas pen widths in pixels; the GUI's slider default is 18.
      repeats: drawings per character, face and pen width, each with its own wobble.
      canvas: canvas side in pixels (the GUI's default).
      height: range of the capital height in canvas pixels (people fill much of the canvas).
      slant: maximum shear (x shift per unit of height), +/-.
      rotate: maximum rotation in degrees, +/-.
      wobble: amplitude of the waviness along strokes, as a fraction of the capital height.
      step: spacing of the points fed to the canvas, in pixels (mouse events while drawing).
      seed: seeds all of the above.
    """

    faces: tuple[str, ...] = ("futural", "rowmans", "scripts", "cursive")
    pen_widths: tuple[float, ...] = (8.0, 14.0, 20.0, 28.0)
    repeats: int = 2
    canvas: int = DEFAULT_SIZE
    height: tuple[float, float] = (150.0, 260.0)
    slant: float = 0.2
    rotate: float = 8.0
    wobble: float = 0.02
    step: float = 4.0
    seed: int = 0


_CAP_UNITS = 21.0  # Hershey capitals span y = -12 .. 9 (y grows downwards, like the canvas)


def _densify(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points every `step` pixels along a polyline [P, 2], like mouse-move events."""
    out = [stroke[:1]]
    for a, b in zip(stroke[:-1], stroke[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        t = np.arange(1, n + 1, dtype=np.float64)[:, None] / n
        out.append(a + t * (b - a))
    return np.concatenate(out)


def hand_paths(strokes, rng: np.random.Generator, opts: DrawnSetOptions) -> list[np.ndarray]:
    """Hershey strokes (lists of (x, y) font units) -> wobbly canvas paths [P, 2] in pixels.

    The glyph is scaled to a random capital height, slanted, rotated and placed at a random
    spot that keeps the pen on the canvas; each stroke then wanders by a slow sinusoid.
    """
    paths = [np.asarray(s, np.float64) for s in strokes if len(s)]
    scale = rng.uniform(*opts.height) / _CAP_UNITS
    angle = np.radians(rng.uniform(-opts.rotate, opts.rotate))
    shear = rng.uniform(-opts.slant, opts.slant)
    # x' = x - shear * y (y grows down, so positive shear leans right), then rotate.
    cos, sin = np.cos(angle), np.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, -shear], [0.0, 1.0]])
    paths = [scale * p @ linear.T for p in paths]
    points = np.concatenate(paths)
    lo, hi = points.min(0), points.max(0)
    margin = max(opts.pen_widths) / 2 + 4
    room = np.maximum(opts.canvas - 2 * margin - (hi - lo), 0.0)
    origin = margin + rng.uniform(0, 1, 2) * room - lo
    amplitude = opts.wobble * opts.height[1]
    out = []
    for path in paths:
        dense = _densify(path + origin, opts.step)
        # Waviness as a function of distance along the stroke: a slow drift, not jitter.
        along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        freq = rng.uniform(0.01, 0.03, 2)
        phase = rng.uniform(0, 2 * np.pi, 2)
        drift = amplitude * np.sin(freq[None, :] * along[:, None] + phase[None, :])
        out.append(np.clip(dense + drift, 0, opts.canvas - 1))
    return out


def draw(canvas: Canvas, paths: list[np.ndarray], width: float) -> np.ndarray:
    """Draws the paths on a cleared canvas with the GUI's code; returns its pixels [H, W]."""
    canvas.clear()
    canvas.set_pen_width(width)
    for path in paths:
        canvas.begin_stroke(QPointF(*path[0]))
        for x, y in path[1:]:
            canvas.extend_stroke(QPointF(x, y))
        canvas.end_stroke()
    return canvas.to_array()


def make_drawn_set(out, opts: DrawnSetOptions = DrawnSetOptions()) -> int:
    """Writes the drawn-glyph set into `out`/SampleNNN/*.png; returns the number of images.

    The folder appears (or replaces an old one) only once every image is written.
    """
    with atomic_path(Path(out)) as tmp:
        return _draw_all(tmp, opts)


def _draw_all(out: Path, opts: DrawnSetOptions) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (keeps Qt alive)
    canvas = Canvas(opts.canvas)
    rng = np.random.default_rng(opts.seed)
    count = 0
    for face in opts.faces:
        font = HersheyFonts()
        font.load_default_font(face)
        for index, char in enumerate(CLASSES):
            folder = out / sample_dir_name(index)
            folder.mkdir(parents=True, exist_ok=True)
            strokes = list(font.strokes_for_text(char))
            for width in opts.pen_widths:
                for k in range(opts.repeats):
                    pixels = draw(canvas, hand_paths(strokes, rng, opts), width)
                    Image.fromarray(pixels).save(folder / f"{face}-w{int(width):02d}-{k}.png")
                    count += 1
    return count


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Folder to write (Chars74K layout).")
    parser.add_argument("--seed", type=int, default=DrawnSetOptions.seed)
    args = parser.parse_args(argv)
    n = make_drawn_set(args.out, DrawnSetOptions(seed=args.seed))
    print(f"wrote {n} drawn glyphs to {args.out}")


if __name__ == "__main__":
    main()
