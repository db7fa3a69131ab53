"""Turns a `--data` value into a prepared cache, building the offline default when needed.

fonts        the font dataset, built on first use under the user's cache folder
PATH         any prepared cache directory (from `charjax data ...`)
"""

import os
from pathlib import Path

from charjax.data.cache import Cache, is_cache, load_cache
from charjax.data.fonts import build_font_dataset
from charjax.errors import CharjaxError


def cache_root() -> Path:
    """Where built datasets live: $CHARJAX_CACHE, else $XDG_CACHE_HOME/charjax, else ~/.cache."""
    if os.environ.get("CHARJAX_CACHE"):
        return Path(os.environ["CHARJAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charjax"


def default_font_cache(image_size: int, data_dir: str | None = None) -> Path:
    root = Path(data_dir) if data_dir else cache_root()
    return root / f"fonts-{image_size}"


def resolve_data(spec: str, image_size: int, data_dir: str | None = None, progress=True) -> Cache:
    """Returns the cache named by `spec`, building the font dataset if it is missing.

    Args:
      spec: "fonts" or a path to a prepared cache.
      image_size: the model input size; a cache of another size is refused.
      data_dir: where "fonts" is built (default: the user's cache folder).
      progress: show progress bars while building.
    """
    if spec == "fonts":
        path = default_font_cache(image_size, data_dir)
        if not is_cache(path):
            build_font_dataset(path, size=image_size, progress=progress)
        cache = load_cache(path)
    else:
        path = Path(spec)
        if not path.exists():
            raise CharjaxError(
                f"unknown --data {spec!r}: not 'fonts' and no such directory "
                "(prepare one with `charjax data fonts|folder ...`)"
            )
        cache = load_cache(path)
    if cache.image_size != image_size:
        raise CharjaxError(
            f"dataset {cache.path} has {cache.image_size}px images but --image-size is "
            f"{image_size}; use --image-size {cache.image_size} or prepare the data again"
        )
    return cache
