"""Use a trained autoencoder, VAE or CVAE: encode, decode, interpolate, sample, reconstruct.

    gen = Generator.load("runs/vae")
    z = gen.encode(gen.preprocess(["a.png", "b.png"]))               # [2, L]
    glyphs = gen.decode(interpolate(z[0], z[1], np.linspace(0, 1, 9), "slerp"))

Glyphs come out in model space, float32 [N, S, S] in [0, 1] with the ink bright on black,
like preprocessed input; `charjax.viz.glyphs.to_paper` turns them into dark ink on white for
people to look at.
Encoding and decoding run jitted, in batches padded to a few fixed sizes so that any number
of glyphs compiles only a handful of programs.
"""

from collections.abc import Sequence

import jax
import numpy as np

from charjax.errors import CharjaxError
from charjax.labels import NUM_CLASSES, char_to_index
from charjax.loaded import LoadedRun, batched, buckets
from charjax.losses import objective_for
from charjax.models.autoencoder import GENERATIVE_KINDS
from charjax.preprocess import model_input

INTERPOLATIONS = ("linear", "slerp")


def class_indices(chars: str, what: str = "--chars") -> list[int]:
    """Class indices of each character of `chars`, or a CharjaxError naming the bad one."""
    try:
        return [char_to_index(c) for c in chars]
    except ValueError as e:
        raise CharjaxError(f"{what}: {e}") from None


class Generator(LoadedRun):
    """A trained generative model ready to use. Build it with `Generator.load`."""

    KINDS = GENERATIVE_KINDS

    def __init__(self, model, variables: dict, meta: dict, source: str = "?"):
        super().__init__(model, variables, meta, source)
        encode = lambda v, x: model.apply(v, model_input(x), method="encode")[0]
        decode = lambda v, z, c: jax.nn.sigmoid(model.apply(v, z, c, method="decode"))[..., 0]
        self._encode, self._decode = jax.jit(encode), jax.jit(decode)
        # Jitted here like encode and decode: a jit inside `evaluate` compiled on every call.
        self._objective = objective = objective_for(self.config)
        sums = lambda v, x, y, mask: objective.eval_sums(  # padding rows masked out
            model.apply, v, model_input(x), {"label": y, "mask": mask}
        )
        self._eval_sums = jax.jit(sums)

    @classmethod
    def wrong_kind(cls, source: str, kind: str) -> str:
        return (
            f"{source} holds a {kind}, not an autoencoder, VAE or CVAE "
            "(train one with `charjax train --arch vae`)"
        )

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def variational(self) -> bool:
        return self.model.variational

    @property
    def conditional(self) -> bool:
        return self.model.conditional

    def condition(self, labels: Sequence[int] | None, n: int) -> np.ndarray:
        """The decoder's class input: one-hot float32 [n, 62] (zeros when `labels` is None)."""
        cond = np.zeros((n, NUM_CLASSES), np.float32)
        if labels is not None:
            cond[np.arange(n), np.asarray(labels)] = 1.0
        return cond

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Posterior means (the code, for a plain autoencoder) float32 [N, L] of uint8 [N, S, S]."""
        return batched(lambda x: self._encode(self.variables, x), np.asarray(images, np.uint8))

    def decode(self, z: np.ndarray, cond: np.ndarray | None = None) -> np.ndarray:
        """Glyphs float32 [N, S, S] in [0, 1] for codes [N, L].

        Args:
          z: latent codes.
          cond: the CVAE's class input [N, 62], one-hot or a mixture (a walk between
            classes); required for a CVAE, ignored by the other kinds.
        """
        z = np.asarray(z, np.float32)
        if cond is None:
            if self.conditional:
                raise CharjaxError("a CVAE needs the class of every glyph it draws")
            cond = self.condition(None, len(z))
        return batched(lambda z, c: self._decode(self.variables, z, c), z, cond)

    def reconstruct(self, images: np.ndarray, labels: Sequence[int] | None = None) -> np.ndarray:
        """Decoded codes of uint8 [N, S, S] (a CVAE needs their `labels`) -> float32 [N, S, S]."""
        cond = self.condition(labels, len(images)) if labels is not None else None
        return self.decode(self.encode(images), cond)

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """Reconstruction metrics over uint8 [N, S, S] (labels matter to a CVAE only).

        Returns:
          {"n", "loss", "recon", "mse"} and, for a VAE or CVAE, "kl": per-image means of the
          training objective's terms, decoding the posterior mean (see `charjax.losses`).
        """
        totals: dict[str, float] = {}
        images, labels = np.asarray(images, np.uint8), np.asarray(labels, np.int32)
        for (x, y), rows in buckets(images, labels):
            mask = np.arange(len(x)) < rows
            for k, v in jax.device_get(self._eval_sums(self.variables, x, y, mask)).items():
                totals[k] = totals.get(k, 0.0) + float(v)
        return self._objective.summarize(totals)

    def sample(
        self,
        n: int,
        *,
        seed: int = 0,
        temperature: float = 1.0,
        labels: Sequence[int] | None = None,
    ) -> np.ndarray:
        """New glyphs from the prior N(0, temperature^2 I): float32 [n, S, S].

        Args:
          n: how many.
          seed: seeds the latent draws; the same seed gives the same codes whatever `labels`.
          temperature: scales the prior's standard deviation (lower: plainer glyphs).
          labels: a CVAE's class per glyph; None cycles through the 62 classes in order.
        """
        if not self.variational:
            raise CharjaxError(
                f"{self.source} holds a plain autoencoder, whose codes follow no known "
                "distribution to sample from; train a VAE (--arch vae or cvae)"
            )
        if n < 1 or temperature <= 0:
            raise CharjaxError("need at least one sample and a positive temperature")
        z = temperature * np.random.default_rng(seed).standard_normal((n, self.latent_dim))
        if not self.conditional:
            return self.decode(z)
        labels = np.arange(n) % NUM_CLASSES if labels is None else labels
        return self.decode(z, self.condition(labels, n))


def lerp(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Points (1 - t) a + t b for each t: [T, L]."""
    ts = np.asarray(ts, np.float32)[:, None]
    return (1.0 - ts) * a[None] + ts * b[None]


def slerp(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Spherical interpolation (Shoemake; White 2016 for latent spaces): [T, L].

    Under a Gaussian prior most mass lies near a sphere, and the straight line between two
    codes cuts through the improbable middle; slerp follows the arc and interpolates the
    norm. It equals `lerp` at t = 0 and 1, and falls back to it for (anti)parallel codes.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.dot(a, b) / max(na * nb, 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return lerp(a, b, ts).astype(np.float32)
    ts = np.asarray(ts, np.float64)[:, None]
    out = (np.sin((1 - ts) * omega) * a + np.sin(ts * omega) * b) / np.sin(omega)
    return out.astype(np.float32)


def interpolate(a: np.ndarray, b: np.ndarray, ts, method: str = "linear") -> np.ndarray:
    """Codes between `a` and `b` at fractions `ts` (0 gives `a`, 1 gives `b`): [T, L]."""
    if method not in INTERPOLATIONS:
        raise CharjaxError(f"unknown interpolation {method!r}; choose {', '.join(INTERPOLATIONS)}")
    return (slerp if method == "slerp" else lerp)(np.asarray(a), np.asarray(b), ts)
