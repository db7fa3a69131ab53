"""ResNets (v1, basic blocks, batch norm) sized for training on a CPU at 32-64 px.

The blocks follow flax's examples/imagenet ResNet; the stem and the downsampling differ, for
speed on CPU (see `ResNet`).
"""

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from charjax.models import layers
from charjax.models.cnn import max_pool_2x2

ModuleDef = Any


class ResNetBlock(nn.Module):
    """Two 3x3 convs and a shortcut (projected by a 1x1 conv when the width changes)."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.act(self.norm()(self.conv(self.filters, (3, 3))(x)))
        y = self.conv(self.filters, (3, 3))(y)
        # Zero-init the last scale so each block starts as the identity (stable early steps).
        y = self.norm(scale_init=nn.initializers.zeros)(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


def stem_stride(image_size: int, first_stage_size: int) -> int:
    """The stem stride that brings `image_size` down to about `first_stage_size`."""
    return max(1, round(image_size / first_stage_size))


class ResNet(nn.Module):
    """A ResNet whose stem scales with the input, so the first stage is ~16x16 at any size.

    Attributes:
      stage_sizes: blocks per stage; every stage after the first starts with a 2x2 max pool.
      widths: channels per stage (the stem has the first stage's width).
      first_stage_size: side of the first stage's map. The stem stride is
        round(image_size / first_stage_size): 32 px -> stride 2, 48 -> 3, 64 -> 4, 128 -> 8,
        so every size costs about the same (resnet-small: 20.4 MFLOP at 32 px, 20.7 at 64).
      stem_kernel: side of the stem kernel; None means 3 up to stride 2, else stride + 1
        (overlapping patches, so no stroke is cut at a patch border).
      fast: use `charjax.models.layers`' batch norm (hand-written backward pass) and conv
        dispatch (1x1 convs as matmuls) on CPU: ~1.2x faster training, the same parameters
        and function. False gives flax's nn.BatchNorm and XLA's convs, the tests' reference.

    Why this shape (train step at batch 128 on the shared 2-core CPU, quiet moments; see
    benchmarks/models_quick.py):
    - The textbook small ResNet (32/64/128 channels, 2 blocks per stage, first stage at full
      32x32) costs 193 MFLOP per image and trains at ~80 images/s: XLA's CPU backward
      convolutions are slow. Starting at 16x16 divides every stage's cost by 4 (44 MFLOP,
      ~330 images/s), and one block per stage halves it again: 20 MFLOP, ~1000 images/s
      at 32 px and at 64 px. Characters are strokes a few pixels wide, so a 16x16 map of 32
      channels, each cell seeing a 3x3 window of the image, keeps what matters.
    - Stages downsample with a 2x2 max pool and stride-1 convs instead of a stride-2 conv:
      the same FLOPs, but XLA's CPU gradient of a strided conv is ~2.5x slower (27 ms vs
      11 ms for the 16x16x32 -> 8x8x64 layer at batch 128), so the whole step is 10-15%
      faster; on held-out fonts it was as accurate (88% vs 87%).
    - Widths 32/64/128 rather than 24/48/96 (11.5 MFLOP, ~1400 images/s) or 16/32/64
      (5.2 MFLOP, ~2700 images/s): after the same training both were ~1% less accurate on
      held-out fonts (87% vs 88%) with a higher training loss, and the real datasets (many
      fonts, handwriting, photos) are more varied than that probe.
    """

    stage_sizes: Sequence[int]
    widths: Sequence[int]
    num_classes: int = 62
    first_stage_size: int = 16
    stem_kernel: int | None = None
    act: Callable = nn.relu
    dtype: jnp.dtype = jnp.float32
    fast: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = partial(
            nn.Conv,
            use_bias=False,
            dtype=self.dtype,
            conv_general_dilated=layers.conv_general_dilated if self.fast else None,
        )
        norm = partial(
            layers.BatchNorm if self.fast else nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
        )
        stride = stem_stride(x.shape[1], self.first_stage_size)
        kernel = self.stem_kernel or (3 if stride <= 2 else stride + 1)

        x = x.astype(self.dtype)  # [B, 32, 32, 1]
        x = conv(self.widths[0], (kernel, kernel), (stride, stride), name="stem_conv")(x)
        x = self.act(norm(name="stem_norm")(x))  # [B, 16, 16, 32]
        for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            if i > 0:
                x = max_pool_2x2(x)  # [B, 8, 8, 32], [B, 4, 4, 64]
            for _ in range(blocks):
                x = ResNetBlock(width, conv=conv, norm=norm, act=self.act)(x)
                # [B, 16, 16, 32], [B, 8, 8, 64], [B, 4, 4, 128]
        x = x.mean(axis=(1, 2))  # [B, 128]
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)  # [B, 62]
        return x.astype(jnp.float32)


ResNetSmall = partial(ResNet, stage_sizes=(1, 1, 1), widths=(32, 64, 128))
