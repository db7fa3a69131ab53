"""Pictures of a generative run's glyphs: `charjax sample` and `charjax reconstruct`.

    charjax sample --checkpoint runs/vae -n 64 --out samples.png
    charjax reconstruct --checkpoint runs/vae a.png b.png --out recon.png

`charjax.generate` works in model space (float32 [N, S, S] in [0, 1], ink bright on black);
here glyphs become dark ink on white, the way people look at characters, in PNG grids.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from charjax.errors import CharjaxError
from charjax.generate import Generator, class_indices
from charjax.viz.grid import enlarge, save_png, tile_grid

_CELL = 64  # side of one glyph in the PNG grids, pixels
_GAP = 2
_GAP_GREY = 200  # light grey between cells: visible on white, quieter than the ink


def to_paper(glyphs: np.ndarray) -> np.ndarray:
    """Model-space glyphs (float [0, 1] or uint8, ink bright) -> uint8 dark ink on white."""
    glyphs = np.asarray(glyphs)
    if glyphs.dtype != np.uint8:
        glyphs = np.clip(np.rint(glyphs * 255.0), 0, 255).astype(np.uint8)
    return 255 - glyphs


def glyph_grid(glyphs: np.ndarray, cols: int, cell: int = _CELL) -> Image.Image:
    """Model-space glyphs [N, S, S] as dark ink on white, `cols` to a row, enlarged to `cell`."""
    tiles = [enlarge(glyph, cell, smooth=True) for glyph in to_paper(glyphs)]
    cols = max(1, min(cols, len(tiles)))
    return tile_grid(tiles, cols, gap=_GAP, fill=_GAP_GREY, border=_GAP)


def _check_png(out) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise CharjaxError(f"--out {out}: write the grid to a .png file")
    return out


def write_samples(
    checkpoint,
    out,
    *,
    n: int = 64,
    char: str | None = None,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict:
    """Samples `n` glyphs and writes them as a PNG grid (dark ink on white).

    Args:
      checkpoint: a VAE or CVAE run (or checkpoint directory).
      out: the .png to write.
      n: number of glyphs (a square-ish grid; rows of up to 16).
      char: draw only this character (needs a CVAE). Without it a CVAE cycles through the
        classes in order.
      temperature: scales the prior's standard deviation.
      seed: seeds the draws.
    Returns:
      {"out": path, "n": n, "grid": [cols, rows], "size": [width, height]}.
    """
    out = _check_png(out)
    labels = None
    if char is not None:
        if len(char) != 1:
            raise CharjaxError(f"--char takes one character, got {char!r}")
        labels = class_indices(char, "--char") * n
    gen = Generator.load(checkpoint)
    if labels is not None and not gen.conditional:
        raise CharjaxError(
            f"--char needs a class-conditional model (--arch cvae); {checkpoint} holds a {gen.kind}"
        )
    glyphs = gen.sample(n, seed=seed, temperature=temperature, labels=labels)
    cols = min(16, max(1, int(np.ceil(np.sqrt(n)))))
    grid = glyph_grid(glyphs, cols)
    save_png(grid, out)
    return {"out": str(out), "n": n, "grid": [cols, -(-n // cols)], "size": list(grid.size)}


def write_reconstructions(checkpoint, images: Sequence, out, *, labels: str | None = None) -> dict:
    """Writes each input beside its reconstruction (input | output pairs, 4 pairs to a row).

    Args:
      checkpoint: an autoencoder, VAE or CVAE run.
      images: image files (or PIL images / arrays); each goes through the run's preprocessing.
      out: the .png to write.
      labels: a CVAE's class of each image, one character per image.
    Returns:
      {"out": path, "n": N, "mse": [per-image mean squared error in model space]}.
    """
    out = _check_png(out)
    gen = Generator.load(checkpoint)
    inputs = gen.preprocess(list(images))
    classes = None
    if labels is not None:
        classes = class_indices(labels, "--labels")
        if len(classes) != len(inputs):
            raise CharjaxError(f"--labels has {len(classes)} characters for {len(inputs)} images")
    elif gen.conditional:
        raise CharjaxError("a CVAE needs each image's class: pass --labels with one char each")
    recon = gen.reconstruct(inputs, classes)
    # Interleaved input, output, input, output ...: 8 cells to a row are 4 pairs.
    pairs = np.stack([inputs / 255.0, recon], axis=1).reshape(-1, *recon.shape[1:])
    save_png(glyph_grid(pairs, cols=min(8, len(pairs))), out)
    mse = np.mean(np.square(inputs / 255.0 - recon), axis=(1, 2))
    return {"out": str(out), "n": len(inputs), "mse": [float(e) for e in mse]}
