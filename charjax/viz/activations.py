"""Seeing inside a trained classifier: each layer's activations, and what its filters look for.

    charjax show --checkpoint runs/resnet letter.png --out act.png
    charjax filters --checkpoint runs/resnet --layer stem_conv --out filters.png

Activations come from flax's `capture_intermediates`: one forward pass records the output of
every submodule's `__call__`, named by its path ("ResNetBlock_1/Conv_0"), so every registered
model can be looked at without changing its code. Filter pictures are activation maximisation,
as in the old TF1 project: gradient ascent on the input image to raise one filter's mean
activation, all filters of a layer at once (one jitted, vmapped step, repeated), with a
Gaussian blur every few steps so the picture keeps strokes instead of turning into pixel noise.
The pictures are grids drawn with Pillow (see `charjax.viz.grid`).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from charjax.errors import CharjaxError
from charjax.labels import CLASSES
from charjax.predict import Predictor
from charjax.preprocess import load_image, model_input
from charjax.viz.grid import (
    BACKGROUND,
    GAP,
    MUTED,
    TEXT,
    enlarge,
    label_font,
    save_png,
    stack_sections,
    tile_grid,
)

SHEET_WIDTH = 960  # content width of `charjax show`; grids wrap to it

# Diverging colours for signed values: light blue (most negative) .. black (zero) .. yellow via
# red (most positive). Zero is black like the input's background, so a feature map reads like
# the image it came from: quiet where there is no ink, coloured where the filter responds.
_DIVERGING_STOPS = np.array(
    [(-1.0, 150, 220, 255), (-0.5, 40, 110, 230), (0.0, 0, 0, 0), (0.5, 220, 40, 30),
     (1.0, 255, 225, 120)]
)  # fmt: skip
DIVERGING_LUT = np.stack(
    [
        np.interp(np.linspace(-1, 1, 256), _DIVERGING_STOPS[:, 0], _DIVERGING_STOPS[:, i])
        for i in (1, 2, 3)
    ],
    axis=1,
).astype(np.uint8)  # [256, 3]


def capture(model: nn.Module, variables: dict, x) -> dict[str, jax.Array]:
    """Every submodule's output for input x float32 [B, S, S, 1], in call order.

    Returns:
      {path: array [B, ...]}, e.g. {"Conv_0": [B, 16, 16, 8], ..., "Dense_0": [B, 62]}. Dropout
      (the identity at inference) and the model's own output (the last layer's again) are left out.
    """
    keep = lambda module, method: method == "__call__" and not isinstance(module, nn.Dropout)
    _, state = model.apply(
        variables, x, train=False, capture_intermediates=keep, mutable=["intermediates"]
    )
    out: dict[str, jax.Array] = {}

    def walk(tree, path):
        for key, value in tree.items():
            if key != "__call__":
                walk(value, (*path, key))
            elif path:  # the root's __call__ is the logits, already captured as the last layer
                out["/".join(path)] = value[0]

    walk(state["intermediates"], ())
    return out


def layer_shapes(predictor: Predictor) -> dict[str, tuple[int, ...]]:
    """{layer path: output shape without the batch axis}, for one image of the run's size."""
    s = predictor.image_size
    order: list[str] = []

    def forward(x):
        out = capture(predictor.model, predictor.variables, x)
        order.extend(out)  # eval_shape returns the dict sorted by name; keep the call order
        return out

    shapes = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, s, s, 1), jnp.float32))
    return {name: tuple(shapes[name].shape[1:]) for name in order}


def check_layer(name: str, predictor: Predictor) -> tuple[int, ...]:
    """The output shape of layer `name`; a CharjaxError naming the valid layers otherwise."""
    shapes = layer_shapes(predictor)
    if name not in shapes:
        raise CharjaxError(
            f"{predictor.config.arch} has no layer {name!r}; choose one of: {', '.join(shapes)}"
        )
    return shapes[name]


def diverging(values: np.ndarray, scale: float) -> np.ndarray:
    """Signed values -> uint8 RGB [..., 3]: blue negative, black zero, red-yellow positive."""
    t = np.clip(np.asarray(values, np.float32) / max(scale, 1e-12), -1.0, 1.0)
    return DIVERGING_LUT[np.rint((t + 1.0) * 127.5).astype(np.int32)]


def _feature_maps(maps: np.ndarray, scale: float) -> Image.Image:
    """[h, w, C] -> a grid of C enlarged maps, coloured on one shared scale."""
    h, w, c = maps.shape
    target = 64 if c <= 16 else 40 if c <= 64 else 26  # many maps: smaller tiles, same sheet
    zoom = max(1, round(target / max(h, w)))
    colored = diverging(np.moveaxis(maps, -1, 0), scale)  # [C, h, w, 3]
    tiles = [enlarge(m, w * zoom, h * zoom) for m in colored]
    return tile_grid(tiles, cols=max(1, (SHEET_WIDTH + GAP) // (w * zoom + GAP)))


def _dense_values(values: np.ndarray, scale: float, classes: bool = False) -> Image.Image:
    """[C] -> a grid of coloured cells; with `classes`, 62 cells labelled and laid out as the
    classes: a row of digits, one of upper case, one of lower case."""
    font = label_font(11)
    if classes:
        rows, cell = (CLASSES[:10], CLASSES[10:36], CLASSES[36:]), 24
        grid = Image.new("RGB", (26 * (cell + GAP) - GAP, 3 * (cell + GAP) - GAP), BACKGROUND)
        draw = ImageDraw.Draw(grid)
        for r, chars in enumerate(rows):
            for k, char in enumerate(chars):
                v = values[CLASSES.index(char)]
                x, y = k * (cell + GAP), r * (cell + GAP)
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(diverging(v, scale)))
                ink = (0, 0, 0) if abs(v) > 0.6 * scale else TEXT  # readable on any colour
                draw.text((x + cell / 2, y + cell / 2), char, fill=ink, font=font, anchor="mm")
        return grid
    cell = 16
    tiles = [Image.new("RGB", (cell, cell), tuple(rgb)) for rgb in diverging(values, scale)]
    return tile_grid(tiles, cols=min(32, len(tiles)))


def _legend(width: int = 240) -> Image.Image:
    bar = diverging(np.linspace(-1, 1, width)[None, :].repeat(14, 0), 1.0)
    legend = Image.new("RGB", (width, 32), BACKGROUND)
    legend.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(legend)
    font = label_font(11)
    for x, text, anchor in ((0, "-max", "la"), (width // 2, "0", "ma"), (width, "+max", "ra")):
        draw.text((x, 17), text, fill=MUTED, font=font, anchor=anchor)
    return legend


def activation_sheet(predictor: Predictor, image, layers: list[str] | None = None) -> Image.Image:
    """The input as the model sees it, then each layer's output for it.

    Args:
      predictor: a loaded run.
      image: a PIL image, array or file path (preprocessed with the run's recorded spec).
      layers: layer paths to show; None shows the model's top-level layers (blocks, not
        the convs inside them). `layer_shapes` lists every path.

    Returns:
      An RGB PIL image. Conv outputs are grids of feature maps, dense outputs grids of values;
      each layer is coloured on its own scale (its largest |value|), blue negative, red positive.
    """
    if isinstance(image, str | Path):
        image = load_image(image)
    pixels = predictor.preprocess([image])  # uint8 [1, S, S]
    acts = capture(predictor.model, predictor.variables, model_input(pixels))
    acts = {name: np.asarray(a[0], np.float32) for name, a in acts.items()}  # call order kept
    names = layers or [n for n in acts if "/" not in n]
    last = list(acts)[-1]  # the logits, one per class
    for name in names:
        if name not in acts:
            check_layer(name, predictor)
    probs = predictor.probabilities(pixels)[0]
    best = np.argsort(-probs)[:3]
    guesses = ", ".join(f"{CLASSES[i]} {probs[i]:.2f}" for i in best)
    s = predictor.image_size
    zoom = max(1, 128 // s)
    seen = enlarge(pixels[0], s * zoom)
    top = Image.new("RGB", (seen.width + 24 + 240, seen.height), BACKGROUND)
    top.paste(seen, (0, 0))
    top.paste(_legend(), (seen.width + 24, seen.height - 32))
    sections = [(f"input {s}x{s}, as the model sees it  ->  {guesses}", top)]
    for name in names:
        a = acts[name]
        scale = float(np.abs(a).max())
        label = f"{name}  {list(a.shape)}  min {a.min():+.3g}  max {a.max():+.3g}"
        if a.ndim == 3:
            picture = _feature_maps(a, scale)
        else:
            picture = _dense_values(a.ravel(), scale, classes=name == last)
        sections.append((label, picture))
    # Logits are only meaningful relative to each other; the probabilities say it plainly.
    sections.append(("softmax probabilities (0 .. 1)", _dense_values(probs, 1.0, classes=True)))
    return stack_sections(sections, min_width=SHEET_WIDTH)


@dataclass(frozen=True)
class FilterImages:
    """Inputs that maximise each filter of one layer, and how much they raised it."""

    layer: str
    images: np.ndarray  # float32 [F, S, S] in [0, 1], ink bright on black
    before: np.ndarray  # float32 [F], mean activation on the starting noise
    after: np.ndarray  # float32 [F], mean activation on the optimised image


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(2 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k2 = np.outer(k, k)
    return k2 / k2.sum()


def maximize_filters(
    predictor: Predictor,
    layer: str,
    *,
    steps: int = 200,
    step_size: float = 0.05,
    blur_every: int = 4,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> FilterImages:
    """Activation maximisation for every filter (or unit) of one layer.

    Starting from faint noise, each image climbs the gradient of its filter's mean activation
    in steps of RMS-normalised size `step_size` (so the pace does not depend on the layer's
    scale), stays inside the valid pixel range [0, 1], and is blurred every `blur_every` steps.

    Args:
      predictor: a loaded run.
      layer: a layer path (see `layer_shapes`); conv layers give one image per channel, dense
        layers one per unit (for the last layer: what the model finds most like each class).
      steps: gradient-ascent steps.
      step_size: pixel change per step, relative to the gradient's RMS.
      blur_every: blur the images every this many steps (0: never).
      blur_sigma: the blur's standard deviation in pixels; None scales it with the image
        (1 px at 32 px), so strokes keep the same width relative to the character.
      seed: for the starting noise.

    Returns:
      A FilterImages with the images and the activations before and after.
    """
    if steps < 1:
        raise CharjaxError(f"--steps must be at least 1, got {steps}")
    shape = check_layer(layer, predictor)
    model, variables, s = predictor.model, predictor.variables, predictor.image_size
    kernel = jnp.asarray(_gaussian_kernel(blur_sigma or max(0.5, s / 32)))

    def objective(x, unit):  # x [S, S] -> mean activation of `unit`
        out = capture(model, variables, x[None, :, :, None])[layer][0]  # [h, w, C] or [C]
        return out[..., unit].mean()

    @jax.jit
    def ascend(x, best, best_value, units):  # one step for all filters: x [F, S, S], units [F]
        value, g = jax.vmap(jax.value_and_grad(objective))(x, units)
        # Keep the best image seen: a blur, or a step across a ReLU kink, can lower the value.
        better = value > best_value
        best = jnp.where(better[:, None, None], x, best)
        best_value = jnp.where(better, value, best_value)
        rms = jnp.sqrt(jnp.mean(g**2, axis=(1, 2), keepdims=True)) + 1e-8
        return jnp.clip(x + step_size * g / rms, 0.0, 1.0), best, best_value

    blur = jax.jit(jax.vmap(lambda x: jax.scipy.signal.convolve2d(x, kernel, mode="same")))
    units = jnp.arange(shape[-1])
    # Faint noise: the data is mostly black, so start near it rather than at mid-grey.
    x = best = 0.1 * jax.random.uniform(jax.random.PRNGKey(seed), (len(units), s, s))
    best_value = jnp.full(len(units), -jnp.inf)
    # A Python loop over one jitted step, not lax.fori_loop: XLA on CPU ran the convolutions
    # inside a while loop about 3x slower (measured on resnet-small, 62 filters at 32 px).
    for i in range(steps):
        x, best, best_value = ascend(x, best, best_value, units)
        if i == 0:
            before = best_value  # the first step measured the starting noise
        if blur_every and (i + 1) % blur_every == 0:
            x = blur(x)
    _, best, best_value = ascend(x, best, best_value, units)  # counts the last step's image
    images, before, after = jax.device_get((best, before, best_value))
    return FilterImages(layer, np.asarray(images), np.asarray(before), np.asarray(after))


def filter_sheet(filters: FilterImages, title: str = "", classes: bool = False) -> Image.Image:
    """The optimised images in a grid, each labelled with its unit and reached activation.

    With `classes` (the logits layer), units are labelled with their characters.
    """
    n, s, _ = filters.images.shape
    zoom = max(1, round(64 / s))
    font = label_font(11)
    tiles = []
    for i, x in enumerate(filters.images):
        tile = Image.new("RGB", (s * zoom, s * zoom + 16), BACKGROUND)
        tile.paste(enlarge(np.rint(x * 255).astype(np.uint8), s * zoom), (0, 16))
        name = CLASSES[i] if classes else str(i)
        draw = ImageDraw.Draw(tile)
        draw.text((1, 12), name, fill=TEXT, font=font, anchor="ls")
        reached = filters.after[i]
        value = f"{reached:.2f}" if abs(reached) < 10 else f"{reached:.0f}"
        draw.text((s * zoom - 1, 12), value, fill=MUTED, font=font, anchor="rs")
        tiles.append(tile)
    cols = math.ceil(math.sqrt(n * 1.6))  # a little wider than tall, like a screen
    header = title or f"{filters.layer}: inputs that maximise each filter's mean activation"
    return stack_sections([(header, tile_grid(tiles, cols, gap=4))], min_width=420)


def show_activations(checkpoint, image, out, layers: list[str] | None = None) -> Path:
    """`charjax show`: writes the activation sheet of `image` under run `checkpoint` to `out`."""
    predictor = Predictor.load(checkpoint)
    return save_png(activation_sheet(predictor, image, layers), out)


def visualize_filters(checkpoint, layer: str | None, out, steps: int = 200) -> FilterImages:
    """`charjax filters`: writes the filter sheet of one layer (default: the first) to `out`.

    Returns:
      The FilterImages, so a caller can report how far the activations rose.
    """
    predictor = Predictor.load(checkpoint)
    names = list(layer_shapes(predictor))
    layer = layer or names[0]
    filters = maximize_filters(predictor, layer, steps=steps)
    title = (
        f"{predictor.config.arch} {layer}: inputs that maximise each filter's mean activation "
        f"({steps} steps; label: unit, activation reached)"
    )
    save_png(filter_sheet(filters, title, classes=layer == names[-1]), out)
    return filters
