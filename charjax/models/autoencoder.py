"""Convolutional autoencoders for glyphs: a plain one, a VAE and a class-conditional VAE.

The plain autoencoder follows the old TF1 project's `enc_v5`: strided convs down to a small
map, a dense layer to a 64-d code, a dense layer back and transposed convs up to the image.
The VAE encodes a Gaussian posterior instead of a point and is trained with reconstruction
+ beta * KL, so its latent space is smooth enough to sample from. The CVAE's decoder also
gets the class as a one-hot vector, so the latent only has to hold the style.

The contract the generative kinds ("autoencoder", "vae", "cvae") keep, beside the classifiers'
(input float32 [B, H, W, 1] in [0, 1], ink bright on black; a `dtype` attribute):

- `model.apply(v, x, labels=None, train=False)` -> `AutoencoderOutput(logits, mean, logvar)`:
  pixel logits [B, H, W, 1] (sigmoid gives the image), posterior mean [B, L] and log-variance
  [B, L] (None for the plain autoencoder). `labels` int [B] are used by the CVAE only; None
  there means "no class" (a zero one-hot), which only `init` and model listings need.
- With train=True a VAE samples z = mean + exp(logvar / 2) * eps with the "latent" rng; with
  train=False it decodes the mean, so evaluation and reconstruction are deterministic.
- `method="encode"`: x -> (mean, logvar); `method="decode"`: (z [B, L], cond [B, C] float or
  None) -> logits [B, S, S, 1] at `image_size`. `cond` may be a soft one-hot (a walk between
  classes); models that are not conditional ignore it.

No batch norm, so variables hold only "params".
"""

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

GENERATIVE_KINDS = ("autoencoder", "vae", "cvae")


class AutoencoderOutput(NamedTuple):
    logits: jax.Array  # [B, H, W, 1]
    mean: jax.Array  # [B, L]
    logvar: jax.Array | None  # [B, L]; None for the plain autoencoder


def _bottleneck_side(image_size: int, downsamplings: int) -> int:
    """Side of the encoder's last map: each stride-2 SAME conv rounds up."""
    side = image_size
    for _ in range(downsamplings):
        side = -(-side // 2)
    return side


class Encoder(nn.Module):
    """Strided convs, flatten, dense heads for the posterior mean (and log-variance)."""

    widths: Sequence[int]
    latent_dim: int
    variational: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = x.astype(self.dtype)  # [B, 32, 32, 1]
        for width in self.widths:
            x = nn.relu(nn.Conv(width, (4, 4), (2, 2), dtype=self.dtype)(x))
            # [B, 16, 16, 32], [B, 8, 8, 64], [B, 4, 4, 128]
        x = x.reshape(x.shape[0], -1)  # [B, 2048]
        mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(x)  # [B, L]
        if not self.variational:
            return mean.astype(jnp.float32), None
        logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(x)  # [B, L]
        return mean.astype(jnp.float32), logvar.astype(jnp.float32)


class Decoder(nn.Module):
    """Dense back to the encoder's last map, then transposed convs up to the image."""

    widths: Sequence[int]  # the encoder's, in the encoder's order
    conditional: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z, cond, size: int):
        side = _bottleneck_side(size, len(self.widths))
        if self.conditional:
            z = jnp.concatenate([z, cond], axis=-1)  # [B, L + 62]
        x = nn.relu(nn.Dense(side * side * self.widths[-1], dtype=self.dtype)(z))  # [B, 2048]
        x = x.reshape(-1, side, side, self.widths[-1])  # [B, 4, 4, 128]
        # 4x4 kernels at stride 2: every output pixel gets the same number of taps, which
        # avoids the checkerboard pattern 3x3 transposed convs paint.
        for width in reversed(self.widths[:-1]):
            x = nn.relu(nn.ConvTranspose(width, (4, 4), (2, 2), dtype=self.dtype)(x))
            # [B, 8, 8, 64], [B, 16, 16, 32]
        x = nn.ConvTranspose(1, (4, 4), (2, 2), dtype=self.dtype)(x)  # [B, 32, 32, 1]
        # Odd sizes round up on the way down, so the way up can overshoot by a few pixels.
        return x[:, :size, :size].astype(jnp.float32)


class ConvAutoencoder(nn.Module):
    """Encoder -> latent -> decoder; see the module docstring for the contract.

    Attributes:
      num_classes: size of the CVAE's one-hot condition.
      latent_dim: size of the code (64, as the old project's enc_v5).
      widths: channels of the encoder's stride-2 convs; the decoder mirrors them.
      variational: encode a Gaussian posterior and sample from it in training (VAE).
      conditional: give the decoder the class as a one-hot vector (CVAE). The encoder sees
        only the image, so any image can be encoded without knowing its class; the KL term
        then pushes class information out of z, leaving the style.
      image_size: side of what `decode` produces; `__call__` follows its input instead, so
        the parameter count can be asked for at any size.
    """

    num_classes: int = 62
    latent_dim: int = 64
    widths: Sequence[int] = (32, 64, 128)
    variational: bool = False
    conditional: bool = False
    image_size: int = 32
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.encoder = Encoder(self.widths, self.latent_dim, self.variational, dtype=self.dtype)
        self.decoder = Decoder(self.widths, self.conditional, dtype=self.dtype)

    def condition(self, labels, batch: int):
        """One-hot [B, C] for int labels [B]; zeros ("no class") for None."""
        if labels is None:
            return jnp.zeros((batch, self.num_classes), jnp.float32)
        return jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)

    def encode(self, x):
        return self.encoder(x)  # ([B, L], [B, L] or None)

    def decode(self, z, cond=None):
        if cond is None:
            cond = self.condition(None, z.shape[0])
        return self.decoder(z, cond, self.image_size)  # [B, S, S, 1]

    def __call__(self, x, labels=None, train: bool = False):
        mean, logvar = self.encoder(x)  # [B, L], [B, L] or None
        z = mean
        if train and self.variational:
            eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
            z = mean + jnp.exp(0.5 * logvar) * eps  # the reparameterisation trick
        logits = self.decoder(z, self.condition(labels, x.shape[0]), x.shape[1])  # [B, H, W, 1]
        return AutoencoderOutput(logits, mean, logvar)


Autoencoder = partial(ConvAutoencoder, variational=False, conditional=False)
VAE = partial(ConvAutoencoder, variational=True)
CVAE = partial(ConvAutoencoder, variational=True, conditional=True)
# Used for testing only: a few thousand parameters, compiles and trains in seconds.
VAETiny = partial(ConvAutoencoder, widths=(8, 16), latent_dim=8, variational=True)
CVAETiny = partial(
    ConvAutoencoder, widths=(8, 16), latent_dim=8, variational=True, conditional=True
)
