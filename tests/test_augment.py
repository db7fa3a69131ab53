import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from charjax.augment import AugmentConfig, _warp, augment_batch, elastic_field
from charjax.errors import CharjaxError

# Every effect switched off; tests switch on the one they look at. Each distinct config is a
# separate compilation, so the tests share as few configs as they can.
OFF = AugmentConfig(
    rotate=0.0, scale=0.0, shear=0.0, translate=0.0, elastic=0.0, stroke=0.0, outline=0.0,
    blur=0.0, noise=0.0, invert=0.0,
)  # fmt: skip


@pytest.fixture
def glyphs():
    """float32 [8, 16, 16, 1]: strokes of varying width and brightness, with a margin."""
    images = np.zeros((8, 16, 16), np.float32)
    for i in range(8):
        width = 1 + i % 3
        images[i, 3:13, 7 : 7 + width] = 1.0  # vertical bar
        images[i, 3 + i : 3 + i + width, 4:12] = 0.6 + 0.05 * i  # crossbar
    return jnp.asarray(images[..., None])


def _replace(cfg, **changes):
    return AugmentConfig(**{**cfg.__dict__, **changes})


@functools.cache
def _compiled(cfg, shape):
    # Without LLVM optimisation: the same graph and results (to float rounding), ~4x faster to
    # compile, which matters because every config here is a compilation of its own.
    lowered = augment_batch.lower(jax.random.key(0), jnp.zeros(shape, jnp.float32), cfg)
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})


def _augment(seed, images, cfg):
    return np.asarray(_compiled(cfg, images.shape)(jax.random.key(seed), images))


def test_strength_zero_is_exact_identity(glyphs):
    out = augment_batch(jax.random.key(0), glyphs, AugmentConfig(strength=0.0))
    assert np.array_equal(np.asarray(out), np.asarray(glyphs))


def test_default_config_under_an_outer_jit(glyphs):
    # The way the train step uses it: inside another jitted function, config closed over.
    step = jax.jit(lambda key, images: augment_batch(key, images, AugmentConfig()))
    a = np.asarray(step(jax.random.key(1), glyphs))
    assert a.shape == glyphs.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, np.asarray(step(jax.random.key(1), glyphs)))
    b = np.asarray(step(jax.random.key(2), glyphs))
    assert not np.array_equal(a, b)
    # Each example gets its own parameters, not one distortion for the whole batch.
    copies = jnp.broadcast_to(glyphs[:1], glyphs.shape)
    c = np.asarray(step(jax.random.key(1), copies))
    assert not np.array_equal(c[0], c[1])


def test_strength_scales_continuously(glyphs):
    out = _augment(8, glyphs, AugmentConfig(strength=1e-3))
    assert not np.array_equal(out, np.asarray(glyphs))
    np.testing.assert_allclose(out, np.asarray(glyphs), atol=0.02)


def test_affine_alone_moves_ink_but_keeps_it_on_canvas(glyphs):
    cfg = _replace(OFF, rotate=10.0, scale=0.08, shear=0.15, translate=0.04)
    out = _augment(3, glyphs, cfg)
    changed = np.abs(out - np.asarray(glyphs)).reshape(8, -1).max(axis=1)
    assert (changed > 0.1).all()
    # Bilinear resampling roughly preserves the amount of ink when nothing leaves the canvas.
    np.testing.assert_allclose(out.sum((1, 2, 3)), np.asarray(glyphs).sum((1, 2, 3)), rtol=0.25)


def test_elastic_at_zero_is_identity(glyphs):
    # Every effect off, elastic included: nothing is resampled, the input comes back exactly.
    np.testing.assert_array_equal(_augment(9, glyphs, OFF), np.asarray(glyphs))
    # A vanishing elastic strength resamples at (almost) the pixel centres: (almost) identity.
    tiny = _augment(9, glyphs, _replace(OFF, elastic=1e-5))
    np.testing.assert_allclose(tiny, np.asarray(glyphs), atol=1e-3)


def test_elastic_alone_bends_strokes_but_keeps_the_ink(glyphs):
    out = _augment(10, glyphs, _replace(OFF, elastic=0.04, elastic_sigma=0.2))[..., 0]
    g = np.asarray(glyphs)[..., 0]
    changed = np.abs(out - g).reshape(8, -1).max(axis=1)
    assert (changed > 0.1).all()
    # Bent, not broken or moved away: every ink pixel of the original has ink within 2 px
    # in the distorted image, and the other way round.
    for before, after in zip(g, out, strict=True):
        assert (ndimage.maximum_filter(after, 5) > 0.2)[before > 0.5].all()
        assert (ndimage.maximum_filter(before, 5) > 0.2)[after > 0.5].all()
    # Local stretching changes the amount of ink of 1-px strokes, but only by so much.
    ratio = out.sum((1, 2)) / g.sum((1, 2))
    assert (ratio > 0.6).all() and (ratio < 1.6).all()


def test_elastic_field_is_smooth_with_unit_variance():
    fields = jax.vmap(lambda k: elastic_field(k, 16, 16, 0.12))(
        jax.random.split(jax.random.key(0), 256)
    )
    f = np.asarray(fields)  # [256, 2, 16, 16]
    assert abs(f.std() - 1.0) < 0.1
    assert abs(f[..., 0, :, :].mean()) < 0.1  # no drift in any direction
    # Neighbouring pixels move together (a bend, not pixel noise); far ones independently.
    near = np.corrcoef(f[..., :, 5].ravel(), f[..., :, 6].ravel())[0, 1]
    far = np.corrcoef(f[..., :, 0].ravel(), f[..., :, 15].ravel())[0, 1]
    assert near > 0.9 and abs(far) < 0.1


def test_stroke_alone_dilates_or_erodes(glyphs):
    out = _augment(4, glyphs, _replace(OFF, stroke=1.0))
    delta = out.sum((1, 2, 3)) - np.asarray(glyphs).sum((1, 2, 3))
    assert (delta != 0).all()
    # Half the examples thicken (more ink), half thin (less ink); with 8 both occur.
    assert (delta > 0).any() and (delta < 0).any()


def test_outline_alone_hollows_thick_ink_and_leaves_thin_strokes():
    # A filled disc becomes a one-pixel ring around where its ink was, with nothing inside;
    # a 2 px bar has no inside to hollow (its outline would be a double line) and stays.
    images = np.zeros((2, 16, 16), np.float32)
    rows, cols = np.mgrid[:16, :16]
    images[0][(rows - 7.5) ** 2 + (cols - 7.5) ** 2 < 25] = 1.0
    images[1, 3:13, 7:9] = 0.8
    out = _augment(11, jnp.asarray(images[..., None]), _replace(OFF, outline=1.0))[..., 0]
    ring = ndimage.grey_dilation(images[0], size=3, mode="constant") - images[0]
    np.testing.assert_allclose(out[0], ring, atol=1e-6)
    assert (out[0][images[0] > 0] == 0).all() and (out[0] > 0).sum() > 20
    np.testing.assert_array_equal(out[1], images[1])
    # At probability 0.5, some discs are hollowed and the others left as they were.
    many = jnp.asarray(np.repeat(images[:1, ..., None], 16, axis=0))
    half = _augment(12, many, _replace(OFF, outline=0.5))[..., 0]
    hollow = half[:, 7, 7] == 0
    assert 0 < hollow.sum() < 16
    np.testing.assert_array_equal(half[~hollow], np.repeat(images[:1], (~hollow).sum(), 0))


def test_blur_alone_spreads_ink(glyphs):
    out = _augment(5, glyphs, _replace(OFF, blur=1.0))
    g = np.asarray(glyphs)
    assert ((out > 0).sum((1, 2, 3)) > (g > 0).sum((1, 2, 3))).all()  # support grown
    assert ((out**2).sum((1, 2, 3)) < (g**2).sum((1, 2, 3))).all()  # contrast lowered
    # Away from the border, blurring moves ink around without creating or losing it.
    np.testing.assert_allclose(out.sum((1, 2, 3)), g.sum((1, 2, 3)), rtol=1e-4)


def test_noise_then_clip_then_invert(glyphs):
    cfg = _replace(OFF, noise=0.2, invert=1.0)
    out = _augment(6, glyphs, cfg)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Inverted after clipping: the black background became white, with noise that only
    # darkens it (negative noise was clipped away before the inversion).
    background = out[np.asarray(glyphs)[..., 0] == 0]
    assert (background < 1).mean() > 0.3
    assert background.mean() > 0.8


def test_invert_alone_flips_polarity(glyphs):
    out = _augment(7, glyphs, _replace(OFF, invert=1.0))
    np.testing.assert_allclose(out, 1.0 - np.asarray(glyphs))


def test_warp_conventions():
    # Exact on the pixel grid: an integer shift moves the image, a quarter turn rotates it.
    warp = jax.jit(_warp)  # one compilation instead of one per eager op
    image = jnp.arange(36, dtype=jnp.float32).reshape(6, 6)
    shifted = np.asarray(warp(image, jnp.eye(2), jnp.array([1.0, 2.0])))
    expected = np.zeros((6, 6), np.float32)
    expected[1:, 2:] = np.asarray(image[:-1, :-2])
    np.testing.assert_allclose(shifted, expected, atol=1e-5)
    quarter = jnp.array([[0.0, -1.0], [1.0, 0.0]])
    turned = np.asarray(warp(image, quarter, jnp.zeros(2)))
    assert any(np.allclose(turned, np.rot90(image, k), atol=1e-4) for k in (1, 3))


def test_invalid_config():
    with pytest.raises(CharjaxError, match="probability"):
        AugmentConfig(blur=1.5)
    with pytest.raises(CharjaxError, match="outline is a probability"):
        AugmentConfig(outline=-0.1)
    with pytest.raises(CharjaxError, match="rotate"):
        AugmentConfig(rotate=-1.0)
    with pytest.raises(CharjaxError, match="elastic_sigma"):
        AugmentConfig(elastic_sigma=0.0)


def test_configs_and_data_sources_import_without_jax():
    # The torch twin (benchmarks/torch_train.py) reads AugmentConfig and TrainConfig, and the
    # data workers render fonts and handwriting: none of them should pay for JAX's import.
    code = (
        "import sys, charjax.config, charjax.data.fonts, charjax.data.handwriting\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
