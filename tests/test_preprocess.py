"""The one preprocessing function under the noise of a photo or a scan."""

import numpy as np
from conftest import render_char

from charjax.preprocess import despeckle, ink_map, preprocess


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
