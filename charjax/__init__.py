"""charjax: train and use neural networks that recognise single characters, in JAX/Flax."""

from charjax.errors import CharjaxError
from charjax.labels import CLASSES, NUM_CLASSES
from charjax.preprocess import PreprocessSpec, preprocess

__all__ = ["CLASSES", "NUM_CLASSES", "CharjaxError", "PreprocessSpec", "preprocess"]
