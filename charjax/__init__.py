"""charjax: train and use neural networks that recognise single characters, in JAX/Flax."""

# First, before anything that could start a JAX backend: XLA reads XLA_FLAGS only then, so
# charjax's CPU defaults must be in the environment by that time (see charjax/backend.py).
from charjax import backend

backend.configure()

from charjax.errors import CharjaxError  # noqa: E402
from charjax.labels import CLASSES, NUM_CLASSES  # noqa: E402
from charjax.preprocess import PreprocessSpec, preprocess  # noqa: E402

__all__ = ["CLASSES", "NUM_CLASSES", "CharjaxError", "PreprocessSpec", "preprocess"]
