"""The one preprocessing function under the noise of a photo or a scan."""

import numpy as np
from conftest import render_char

from charjax.preprocess import despeckle, ink_map, preprocess, to_grey


def _noisy(image, sigma: float, seed: int = 0) -> np.ndarray:
    grey = np.asarray(image.convert("L"), np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, grey.shape)
    return np.clip(grey + noise, 0, 255).astype(np.uint8)


def test_sensor_noise_does_not_move_the_crop_box_of_a_glyph():
    # Noise of 15 grey levels, as a phone photo in dim light: a few lone pixels pass the ink
    # threshold; kept, they would widen the crop box and shrink the glyph inside it.
    for char in "Rg7":
        clean = preprocess(render_char(char)).astype(np.float32)
        noisy = preprocess(_noisy(render_char(char), 15)).astype(np.float32)
        assert np.abs(noisy - clean).mean() < 0.03 * 255, char


def _pencil(image, ink: float, paper: float, sigma: float, seed: int = 0) -> np.ndarray:
    """A black-on-white glyph as ink of grey level `ink` on paper of `paper`, under grain."""
    grey = np.asarray(image.convert("L"), np.float32) / 255
    y = paper - (1 - grey) * (paper - ink)
    y += np.random.default_rng(seed).normal(0, sigma, grey.shape)
    return np.clip(y, 0, 255).astype(np.uint8)


def test_faint_ink_under_grain_comes_out_like_clean_ink():
    # Pencil (grey 160 on paper 235) under grain of 12 grey levels: the grain is as strong as a
    # sixth of the ink. Taken as it is, it stays as speckles around and inside the strokes.
    for char in "Rg7":
        clean = preprocess(render_char(char)).astype(np.float32)
        pencil = _pencil(render_char(char), 160, 235, 12)
        assert np.abs(preprocess(pencil).astype(np.float32) - clean).mean() < 0.1 * 255, char
        paper = ink_map(to_grey(render_char(char))) == 0
        grain = lambda ink, paper=paper: (despeckle(ink, 0.2)[paper] > 0.2).mean()
        assert grain(ink_map(to_grey(pencil))) < 0.002
        assert grain(ink_map(to_grey(pencil), denoise=False)) > 0.01


def test_heavy_noise_on_white_paper_does_not_widen_the_crop():
    # 35 grey levels on paper at 255: half the border is clipped to white, so the noise is
    # measured on its other side. Without denoising, its clumps passed the despeckling and the
    # crop box grew to most of the image (a mean difference of 36-61 grey levels from clean).
    for char in "Rg7":
        clean = preprocess(render_char(char, "DejaVuSerif.ttf")).astype(np.float32)
        noisy = preprocess(_noisy(render_char(char, "DejaVuSerif.ttf"), 35)).astype(np.float32)
        assert np.abs(noisy - clean).mean() < 0.08 * 255, char


def test_denoising_leaves_a_clean_image_exactly():
    for char in "Rg7":
        grey = to_grey(render_char(char))
        np.testing.assert_array_equal(ink_map(grey), ink_map(grey, denoise=False))


def test_despeckle_keeps_a_clean_glyph_exactly():
    ink = 1 - np.asarray(render_char("i").convert("L"), np.float32) / 255  # the dot included
    np.testing.assert_array_equal(despeckle(ink, 0.2), ink)


def test_uneven_light_is_divided_out_and_even_light_is_left_as_it_was():
    grey = np.asarray(render_char("W", size=64).convert("L"), np.float32) / 255
    shaded = grey * (1 - np.linspace(0, 0.6, grey.shape[1])[None, :])  # paper 1.0 -> 0.4
    even = ink_map(grey, even_light=True)
    np.testing.assert_array_equal(even, ink_map(grey))
    paper, stroke = even < 0.05, even > 0.5

    def as_ink(ink):  # shares of the paper read as ink, and of the strokes lost
        return (paper & (ink > 0.2)).mean() / paper.mean(), (stroke & (ink < 0.5)).mean()

    assert as_ink(ink_map(shaded, even_light=True)) == (0.0, 0.0)
    assert as_ink(ink_map(shaded))[0] > 0.2  # against one paper level, the dark side is ink
