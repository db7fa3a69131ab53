"""Random distortions of character images, in pure JAX, run inside the jitted train step.

Images follow the preprocessing convention (ink bright on black, see charjax.preprocess) as
float32 [B, H, W, 1] in [0, 1]. Zero is the background, so the warp fills with zeros and grey
dilation thickens strokes.

The warp is one bilinear resampling that composes the affine map with an elastic distortion
(Simard, Steinkraus and Platt, 2003: a random displacement per pixel, smoothed by a gaussian):
the affine part moves the whole glyph, the elastic part bends its strokes locally the way
different hands draw the same letter.

One key augments a whole batch: it is split per example, and vmapped per-example functions draw
each example's parameters and apply them. Every effect is computed for every example and kept
or dropped with `jnp.where`, so there is no control flow on traced values; effects switched off
in the (static) config are left out of the graph altogether.

The 3x3 filters are 1-D `reduce_window`s on purpose. Filters built from shifted slices let XLA
fuse the warp's gathers into every filter tap and recompute them, 5-10x slower on CPU.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# The config is JAX-free (benchmarks' torch twin reads it without importing JAX); this module
# is where it is used.
from charjax.config import BLUR_SIGMA, OUTLINE_INSIDE, AugmentConfig

# One uniform draw per random parameter of an example. Drawing them all at once keeps the
# compiled graph small (every random call is its own loop on CPU), and a fixed position per
# parameter means switching one effect off leaves the randomness of the others as it was.
_UNIFORMS = (
    "angle", "zoom", "shear", "shift_row", "shift_col", "stroke", "stroke_sign",
    "stroke_amount", "blur", "blur_sigma", "noise_std", "invert",
)  # fmt: skip


def _smoothing(n: int, sigma: float) -> np.ndarray:
    """[n, m] gaussian smoothing from m lattice points onto n pixels, rows of unit L2 norm.

    The noise lives on a lattice a little coarser than the pixels (spacing about 2/3 sigma):
    smoothed, it is the same field, from several times fewer random numbers, which are what
    the elastic field costs on CPU. Unit L2 rows (not unit sums) keep the field's variance
    equal to the noise's at every pixel, the border included, so `elastic` is the
    displacement's standard deviation.
    """
    m = min(n, math.ceil((n - 1) / max(1.0, sigma / 1.5))) + 1
    d = np.arange(n)[:, None] - np.linspace(0, n - 1, m)[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)


def elastic_field(key, h: int, w: int, sigma: float) -> jax.Array:
    """A smooth random displacement field [2, H, W] (rows, cols), unit variance per pixel.

    Uniform noise smoothed by a separable gaussian of `sigma` (a fraction of the side), as
    two small matmuls: far cheaper than a convolution with a kernel this wide.
    """
    rows, cols = _smoothing(h, sigma * h), _smoothing(w, sigma * w)  # [H, h'], [W, w']
    shape = (2, rows.shape[1], cols.shape[1])
    noise = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * math.sqrt(3.0)
    return jnp.matmul(jnp.matmul(rows, noise), cols.T)  # [2, H, W]


def _sample(key, h: int, w: int, cfg: AugmentConfig) -> dict[str, jax.Array]:
    """Draws one example's random parameters: scalars, plus its noise and elastic fields."""
    s = cfg.strength
    p = min(s, 1.0)  # probabilities are capped at 1 however strong the magnitudes get
    k_uniform, k_noise = jax.random.split(key)
    u = dict(zip(_UNIFORMS, jax.random.uniform(k_uniform, (len(_UNIFORMS),)), strict=True))

    def symmetric(name, limit):  # uniform in [-limit, limit]
        return (2.0 * u[name] - 1.0) * limit

    angle = symmetric("angle", math.radians(cfg.rotate) * s)
    zoom = 1.0 + symmetric("zoom", cfg.scale * s)
    shear = symmetric("shear", cfg.shear * s)
    shift_limit = cfg.translate * s
    shift = jnp.stack(
        [symmetric("shift_row", shift_limit * h), symmetric("shift_col", shift_limit * w)]
    )
    # The forward map of (row, col) offsets from the centre is zoom * rotation @ shear, with
    # shear (col += shear * row). Sampling needs the inverse, shear^-1 @ rotation^T / zoom:
    # for each output pixel, where it came from in the input.
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    inverse = jnp.array([[cos, sin], [-shear * cos - sin, cos - shear * sin]]) / zoom
    params = {
        "inverse": inverse,  # [2, 2]
        "shift": shift,  # [2], (row, col) in pixels
        "stroke": u["stroke"] < cfg.stroke * p,
        "stroke_sign": jnp.where(u["stroke_sign"] < 0.5, 1.0, -1.0),
        "stroke_amount": 0.5 + 0.5 * u["stroke_amount"],
        "blur": u["blur"] < cfg.blur * p,
        "blur_sigma": BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u["blur_sigma"],
        "invert": u["invert"] < cfg.invert * p,
    }
    if cfg.noise:
        std = u["noise_std"] * cfg.noise * s
        params["noise"] = std * _standard_normal(k_noise, (h, w))  # [H, W]
    if cfg.elastic:
        # Its own key folded from the example's, so the other effects draw what they did
        # before elastic distortion existed.
        field = elastic_field(jax.random.fold_in(key, 1), h, w, cfg.elastic_sigma)
        params["displace"] = field * (cfg.elastic * s * np.float32([h, w])[:, None, None])
    if cfg.outline:  # the same, for what was drawn before outlines existed
        params["outline"] = jax.random.uniform(jax.random.fold_in(key, 2)) < cfg.outline * p
    return params


def _standard_normal(key, shape):
    """Standard normal samples by Box-Muller, from half as many pairs of uniforms.

    `jax.random.normal` inverts the CDF with a ~170-op polynomial (erf_inv) per sample; XLA
    counts those ops as cheap and copies them into every consumer of the augmented image
    (cnn-small's first conv reads each pixel 9 times), which made augmentation cost more than
    cnn-small's whole forward and backward pass. Box-Muller's log, sqrt and cos are ops XLA
    computes once, and it needs half the random bits.
    """
    n = math.prod(shape)
    u1, u2 = jax.random.uniform(key, (2, (n + 1) // 2), minval=jnp.finfo(jnp.float32).tiny)
    radius, angle = jnp.sqrt(-2.0 * jnp.log(u1)), (2.0 * math.pi) * u2
    z = jnp.concatenate([radius * jnp.cos(angle), radius * jnp.sin(angle)])
    return z[:n].reshape(shape)


def _warp(image, inverse, shift, displace=None):
    """Bilinear affine (and elastic) warp of image [H, W] about its centre; zero outside.

    Args:
      image: [H, W].
      inverse: [2, 2], output offset from the centre -> input offset, in (row, col).
      shift: [2], translation of the output, in pixels.
      displace: optional [2, H, W] elastic displacement of each output pixel, in pixels,
        applied before the affine map: one resampling for both, so no double blur.
    """
    h, w = image.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2], np.float32)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y = rows - centre[0] - shift[0]  # [H, W]
    x = cols - centre[1] - shift[1]
    if displace is not None:
        y, x = y + displace[0], x + displace[1]
    # Written out rather than an einsum: a 2x2 matmul becomes a dot that XLA will not fuse.
    src_row = inverse[0, 0] * y + inverse[0, 1] * x + centre[0]
    src_col = inverse[1, 0] * y + inverse[1, 1] * x + centre[1]
    # As fast as a hand-written gather on CPU here (measured), and simpler.
    return jax.scipy.ndimage.map_coordinates(image, [src_row, src_col], order=1, mode="constant")


def _max_filter(image):
    """3x3 grey dilation of image [H, W]; pixels outside the image are ignored."""
    # Separable: two 1-D windows cost far less than one 3x3 window on CPU.
    for window in ((3, 1), (1, 3)):
        image = jax.lax.reduce_window(image, -jnp.inf, jax.lax.max, window, (1, 1), "SAME")
    return image


def _outline(image):
    """The outline of the ink in image [H, W]: what a 3x3 grey dilation adds to it.

    A ring one pixel wide just outside the ink, empty where the ink was: a hollow glyph whose
    inside is the old strokes (a 2 px stroke becomes two thin lines 2 px apart).
    """
    return jnp.clip(_max_filter(image) - image, 0.0, 1.0)


def _has_inside(image):
    """Whether the strokes of image [H, W] are thick enough to hollow: a 3x3 grey erosion
    keeps over a third of the ink. Outline fonts outline bold designs; the outline of a 1-2 px
    stroke is a double line that no font or hand draws."""
    return (-_max_filter(-image)).sum() > OUTLINE_INSIDE * image.sum()


def _gaussian_blur(image, sigma):
    """3x3 gaussian blur of image [H, W] with a traced sigma; zero outside."""
    # Per axis the kernel is [g, 1, g] / (1 + 2g) with g = exp(-1 / (2 sigma^2)), which is
    # (1 - g) / (1 + 2g) of the image plus g / (1 + 2g) of its 3-pixel box sum. Box sums are
    # reduce_windows, which stay fast under vmap with a different sigma per example.
    g = jnp.exp(-0.5 / sigma**2)
    centre, side = (1 - g) / (1 + 2 * g), g / (1 + 2 * g)
    for window in ((3, 1), (1, 3)):
        box = jax.lax.reduce_window(image, 0.0, jax.lax.add, window, (1, 1), "SAME")
        image = centre * image + side * box
    return image


def _augment_one(params: dict[str, jax.Array], image, cfg: AugmentConfig):
    """Applies one example's drawn parameters to its image [H, W] in [0, 1]."""
    if cfg.rotate or cfg.scale or cfg.shear or cfg.translate or cfg.elastic:
        image = _warp(image, params["inverse"], params["shift"], params.get("displace"))
    if cfg.stroke:
        # Erosion is dilation of the negative, so one filter serves both directions.
        sign = params["stroke_sign"]
        changed = sign * _max_filter(sign * image)
        # Blend in part of the change: a full 3x3 erosion can erase the 1-2 px strokes of
        # thin fonts at 32x32.
        changed = image + params["stroke_amount"] * (changed - image)
        image = jnp.where(params["stroke"], changed, image)
    if cfg.outline:  # after any thickening above, which widens the hollow
        hollow = params["outline"] & _has_inside(image)
        image = jnp.where(hollow, _outline(image), image)
    if cfg.blur:
        image = jnp.where(params["blur"], _gaussian_blur(image, params["blur_sigma"]), image)
    if cfg.noise:
        image = image + params["noise"]
    image = jnp.clip(image, 0.0, 1.0)
    if cfg.invert:
        image = jnp.where(params["invert"], 1.0 - image, image)
    return image


@functools.partial(jax.jit, static_argnames="cfg")
def augment_batch(
    key: jax.Array, images: jax.Array, cfg: AugmentConfig = AugmentConfig()
) -> jax.Array:
    """Randomly distorts a batch of character images: affine, elastic, stroke, outline, blur,
    noise, invert.

    Args:
      key: one PRNG key for the whole batch; each example gets its own split of it.
      images: float32 [B, H, W, 1] in [0, 1], ink bright on black (see `model_input`).
      cfg: which distortions and how strong; static (hashable), so each config compiles once.

    Returns:
      float32 [B, H, W, 1] in [0, 1]. With `cfg.strength == 0`, the input unchanged.
    """
    if cfg.strength == 0:
        return images
    b, h, w, _ = images.shape
    params = jax.vmap(functools.partial(_sample, h=h, w=w, cfg=cfg))(jax.random.split(key, b))
    out = jax.vmap(functools.partial(_augment_one, cfg=cfg))(params, images[..., 0])
    return out[..., None].astype(jnp.float32)  # [B, H, W, 1]
