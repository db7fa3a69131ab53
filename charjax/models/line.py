"""The line model: a convolutional network over a whole line, read out with CTC.

A glyph classifier sees one glyph cropped to its ink; this model sees the line at a fixed
height (`charjax.data.line_data.normalize_line`), so where a glyph sits against its neighbours
(x-height, cap height, baseline) tells its case, and joined script needs no cutting: CTC
(`optax.ctc_loss`) learns where the characters are from the text alone.

    [B, 32, W, 1] --conv/pool--> [B, 2, W/4, C] --columns as a sequence--> [B, W/4, 2C]
        --dense + dilated 1-D convs over the sequence--> [B, W/4, 64] logits
        (blank, the 62 classes, space)

Only convolutions: a recurrent layer runs its W/4 steps one after another, which on a CPU
costs more than these convolutions, and four dilated layers already see about four glyphs
either side, enough for case and for look-alikes such as 0/O among neighbours.
"""

from functools import partial

import flax.linen as nn
import jax.numpy as jnp

# Columns of the input per output step: two 2x2 max pools.
STRIDE = 4


class LineNet(nn.Module):
    """Logits of each output step of a line. See the module docstring for the shapes."""

    num_classes: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 96)
    width: int = 192
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):  # x: [B, 32, W, 1], ink in [0, 1]; W a multiple of STRIDE
        conv = partial(nn.Conv, kernel_size=(3, 3), dtype=self.dtype)
        c1, c2, c3, c4 = self.channels
        x = nn.relu(conv(c1)(x.astype(self.dtype)))
        x = nn.max_pool(x, (2, 2), (2, 2))  # [B, 16, W/2, c1]
        x = nn.relu(conv(c2)(x))
        x = nn.max_pool(x, (2, 2), (2, 2))  # [B, 8, W/4, c2]
        x = nn.relu(conv(c3)(x))
        x = nn.relu(conv(c3)(x))
        x = nn.max_pool(x, (2, 1), (2, 1))  # [B, 4, W/4, c3]
        x = nn.relu(conv(c4)(x))
        x = nn.max_pool(x, (2, 1), (2, 1))  # [B, 2, W/4, c4]
        b, h, t, c = x.shape
        x = x.transpose(0, 2, 1, 3).reshape(b, t, h * c)  # [B, T, 2 * c4]: a column per step
        x = nn.relu(nn.Dense(self.width, dtype=self.dtype)(x))  # [B, T, width]
        for d in self.dilations:
            # Pre-norm residual blocks: the sum keeps each step's own column in reach.
            y = nn.LayerNorm(dtype=self.dtype)(x)
            y = nn.Conv(self.width, (3,), kernel_dilation=(d,), dtype=self.dtype)(y)
            x = x + nn.relu(y)  # [B, T, width]
        x = nn.LayerNorm(dtype=self.dtype)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)  # [B, T, K]
