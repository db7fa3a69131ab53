"""charjax: train and use neural networks that recognise single characters, in JAX/Flax.

    import charjax
    predictor = charjax.load()            # the bundled model; or charjax.load("runs/NAME")
    predictor.predict("a.png")[0].top1

`import charjax` first puts charjax's XLA:CPU defaults into XLA_FLAGS
(`charjax.backend.configure`; CHARJAX_XLA_DEFAULTS=0 turns them off). It does not import JAX:
the data workers it spawns import charjax too and should not pay for JAX, Flax and Orbax.
"""

# First, before anything that could start a JAX backend: XLA reads XLA_FLAGS only then.
from charjax import backend

backend.configure()

from charjax.errors import CharjaxError  # noqa: E402
from charjax.labels import CLASSES, NUM_CLASSES  # noqa: E402
from charjax.preprocess import PreprocessSpec, preprocess  # noqa: E402

__all__ = ["CLASSES", "NUM_CLASSES", "CharjaxError", "PreprocessSpec", "load", "preprocess"]


def load(path=None):
    """Loads a trained classifier for prediction: a `charjax.predict.Predictor`.

    Args:
      path: a run directory from `charjax train` or a checkpoint directory; None loads the
        bundled default model (see MODEL_CARD.md).

    Raises:
      CharjaxError: no checkpoint there, or one that is not a classifier.
    """
    # Lazy: charjax.predict brings in JAX, Flax and Orbax (seconds), which `import charjax`
    # keeps out of the spawned data workers.
    from charjax.predict import load as load_predictor

    return load_predictor(path)
