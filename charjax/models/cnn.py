"""Plain convolutional classifiers: the old project's `cnn-small`, and `tiny` for tests.

Both follow the model contract in `charjax.models`: float32 [B, H, W, 1] in [0, 1] in,
float32 logits [B, num_classes] out, `dtype` is the compute dtype (params stay float32).
Neither has batch norm, so their variables hold only "params".
"""

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from charjax.models import layers


def max_pool_2x2(x):
    """2x2 max pool with stride 2 and SAME padding, on [B, H, W, C].

    On even sizes this is a reshape and a max, which XLA on CPU runs about 1.3x faster than
    `reduce_window` (measured here, forward and backward); it is exactly `nn.max_pool`, since
    the windows tile the map with no padding. Odd sizes fall back to `nn.max_pool` with SAME
    padding (pads with -inf, so a 1x1 map stays 1x1 and a 3x3 map becomes 2x2).
    """
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, one bias at the end (as TF's separable_conv2d).

    `fast` computes both with `layers.conv_general_dilated` (shifted multiply-adds and a
    matmul), which XLA runs several times faster on CPU than its grouped and 1x1 convs.
    """

    features: int
    dtype: jnp.dtype = jnp.float32
    fast: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(
            x.shape[-1],
            (3, 3),
            feature_group_count=x.shape[-1],
            use_bias=False,
            dtype=self.dtype,
            conv_general_dilated=layers.conv_general_dilated if self.fast else None,
            name="depthwise",
        )(x)
        return nn.Conv(
            self.features,
            (1, 1),
            dtype=self.dtype,
            conv_general_dilated=layers.conv_general_dilated if self.fast else None,
            name="pointwise",
        )(x)


class CNN(nn.Module):
    """The old TF1 project's classifier: conv, then separable convs, each followed by a pool.

    Attributes:
      widths: channels of the plain 3x3 conv, then of each separable conv.
      hidden: width of the dense layer before the classifier.
      dropout_rate: dropout on the hidden layer (train only).
      fast: compute the convs with `charjax.models.layers.conv_general_dilated`, the
        formulations XLA runs fastest on CPU (depthwise and 1-channel convs as shifted
        multiply-adds, 1x1 convs as matmuls); the same parameters and function. False gives
        XLA's plain convolutions, the reference tests/test_perf_equivalence.py compares with.

    Every conv is followed by ReLU and a 2x2 max pool with SAME padding, so any input size
    works: at 32 px five pools reach 1x1 exactly (32 -> 16 -> 8 -> 4 -> 2 -> 1), as in the
    original; at 16 px the last pool keeps the 1x1 map (SAME padding never shrinks a map
    below 1). Larger inputs end with a bigger map (2x2 at 64 px), which a global max pool
    reduces to 1x1 -- the same as pooling on until 1x1 -- so the parameter count does not
    depend on the image size and the dense head is the original's 512 -> 178.
    """

    num_classes: int = 62
    widths: Sequence[int] = (8, 32, 72, 160, 512)
    hidden: int = 178
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32
    fast: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        # fast: the CPU formulations of charjax.models.layers (the same parameters and
        # function, 2.5-5x faster training on CPU); False: XLA's plain ops, the reference.
        conv_fn = layers.conv_general_dilated if self.fast else None
        x = x.astype(self.dtype)  # [B, 32, 32, 1]
        x = nn.Conv(self.widths[0], (3, 3), dtype=self.dtype, conv_general_dilated=conv_fn)(x)
        x = max_pool_2x2(nn.relu(x))  # [B, 16, 16, 8]
        for width in self.widths[1:]:
            x = SeparableConv(width, dtype=self.dtype, fast=self.fast)(x)  # [B, 16, 16, 32] ...
            x = max_pool_2x2(nn.relu(x))  # [B, 8, 8, 32] ... [B, 1, 1, 512]
        x = x.max(axis=(1, 2))  # [B, 512]
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x))  # [B, 178]
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)  # [B, 62]
        return x.astype(jnp.float32)


class Tiny(nn.Module):
    """A very small classifier, used for testing only (trains in seconds, learns little).

    Two small convs and a global average pool, so the parameter count is the same at every
    image size and tiny enough that tests compile and run in well under a second.
    """

    num_classes: int = 62
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)  # [B, 32, 32, 1]
        x = nn.relu(nn.Conv(8, (3, 3), dtype=self.dtype)(x))  # [B, 32, 32, 8]
        x = max_pool_2x2(x)  # [B, 16, 16, 8]
        x = nn.relu(nn.Conv(16, (3, 3), dtype=self.dtype)(x))  # [B, 16, 16, 16]
        x = x.mean(axis=(1, 2))  # [B, 16]
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)  # [B, 62]
        return x.astype(jnp.float32)


CNNSmall = partial(CNN, widths=(8, 32, 72, 160, 512), hidden=178)
