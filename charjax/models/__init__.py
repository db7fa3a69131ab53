"""Models chosen by name (`--arch`): a registry of flax.linen modules.

The contract every classifier keeps (the trainer, predictor and GUI rely on it):

- input float32 [B, H, W, 1] in [0, 1], ink bright on black, H = W = the image size
  (any side `charjax.preprocess` allows, MIN_IMAGE_SIZE..MAX_IMAGE_SIZE); output float32
  logits [B, num_classes];
- `model.init({"params": k, "dropout": k2}, x, train=False)` and
  `model.apply(variables, x, train=..., rngs={"dropout": k})`; variables are
  {"params": ...} plus {"batch_stats": ...} for models with batch norm, which with
  train=True also need `mutable=["batch_stats"]`;
- a `dtype` attribute, the compute dtype (params stay float32, logits come back float32).

`ModelSpec.kind` says which contract a model keeps: "classifier" (above), or one of the
generative kinds "autoencoder", "vae", "cvae" (see `charjax.models.autoencoder`).
`build_model(config)` is how a run gets its module: the arch's, with the config's options for
its kind, computing in the config's dtype.
"""

from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn

from charjax.backend import compute_dtype
from charjax.config import TrainConfig
from charjax.errors import CharjaxError
from charjax.labels import NUM_CLASSES
from charjax.models.autoencoder import CVAE, VAE, Autoencoder, CVAETiny, VAETiny
from charjax.models.cnn import CNNSmall, Tiny
from charjax.models.resnet import ResNetSmall


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: `build(num_classes=..., **kw)` returns the flax module."""

    name: str
    description: str
    build: Callable[..., nn.Module]
    kind: str = "classifier"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "cnn-small",
            "the old TF1 project's net: conv + 4 separable convs, 5 max pools, dense 178",
            CNNSmall,
        ),
        ModelSpec(
            "resnet-small",
            "ResNet + batch norm: stem strides to 16x16 at any size, then 3 stages of 1 block "
            "(32/64/128 ch); fast on CPU",
            ResNetSmall,
        ),
        ModelSpec("tiny", "two small convs + global pool; for tests only", Tiny),
        ModelSpec(
            "autoencoder",
            "the old project's enc_v5: 3 stride-2 convs, 64-d code, dense, 3 transposed convs",
            Autoencoder,
            kind="autoencoder",
        ),
        ModelSpec("vae", "the autoencoder as a VAE (--latent-dim, --beta)", VAE, kind="vae"),
        ModelSpec("cvae", "the VAE with the class given to the decoder", CVAE, kind="cvae"),
        ModelSpec("vae-tiny", "VAE: 2 small convs, 8-d code; for tests only", VAETiny, "vae"),
        ModelSpec("cvae-tiny", "CVAE: 2 small convs, 8-d code; for tests only", CVAETiny, "cvae"),
    )
}


def model_names(kind: str | None = None) -> list[str]:
    """Registered names, optionally only those of one kind."""
    return [n for n, s in MODELS.items() if kind is None or s.kind == kind]


def model_spec(name: str) -> ModelSpec:
    """The registry entry of `name`; the one place an unknown name is refused.

    Raises:
      CharjaxError: for an unknown name (the message lists the valid ones).
    """
    if name not in MODELS:
        raise CharjaxError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return MODELS[name]


def model_kind(arch: str) -> str:
    """The registry kind of `arch` ("classifier", "autoencoder", "vae", "cvae")."""
    return model_spec(arch).kind


def get_model(name: str, num_classes: int = NUM_CLASSES, **kw) -> nn.Module:
    """Builds the model registered as `name`.

    Args:
      name: a key of `MODELS`, e.g. "resnet-small".
      num_classes: size of the output layer.
      **kw: module attributes to override, e.g. `dtype=jnp.bfloat16`.

    Raises:
      CharjaxError: for an unknown name (the message lists the valid ones).
    """
    return model_spec(name).build(num_classes=num_classes, **kw)


def build_model(config: TrainConfig) -> nn.Module:
    """The flax module a run trains: its arch, with the config's options for its kind,
    computing in the config's dtype on this machine's backend.

    Raises:
      CharjaxError: for an unknown arch, or a latent size given to a classifier.
    """
    dtype = compute_dtype(config.dtype)
    if model_kind(config.arch) == "classifier":
        if config.latent_dim is not None:
            raise CharjaxError(f"--latent-dim is for generative models; {config.arch} classifies")
        return get_model(config.arch, dtype=dtype)
    options = {"image_size": config.image_size, "dtype": dtype}
    if config.latent_dim is not None:
        options["latent_dim"] = config.latent_dim
    return get_model(config.arch, **options)
