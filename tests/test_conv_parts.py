"""benchmarks/conv_parts.py compares like with like: each part of a convolution that it times
for torch computes the numbers charjax's part computes. Skipped without torch, which only the
benchmarks need (`pip install -e '.[bench]'`)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is a benchmarks-only dependency ([bench])")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import conv_parts  # noqa: E402


@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_parts_compute_charjax_parts(channels_last):
    ours = conv_parts.jax_parts(4, 8, 16)
    theirs = conv_parts.torch_parts(4, 8, 16, channels_last)
    assert set(ours) == set(theirs) == set(conv_parts.PARTS)
    for part in conv_parts.PARTS:
        expected = np.asarray(ours[part]())
        got = conv_parts.as_hwio(part, theirs[part]())
        assert got.shape == expected.shape, part
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
