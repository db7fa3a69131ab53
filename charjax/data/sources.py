"""Turns a `--data` value into a prepared cache, building what is missing.

fonts                   the font dataset, built on first use under the user's cache folder
handwriting             synthetic handwriting (`charjax.data.handwriting`, default options),
                        built on first use under the same folder
chars74k[:SUBSETS[:SPLIT]]
                        Chars74K (default subsets font,hand,img_good; split random),
                        downloaded and prepared on first use under the same folder
PATH                    any prepared cache directory (from `charjax data ...`)
A+B, A:0.7+B:0.3        several of the above as one dataset, optionally weighted (see
                        `charjax.data.mixture` for the syntax and what weights do)
"""

import os
from pathlib import Path

from charjax.data.cache import Cache, is_cache, load_cache
from charjax.data.chars74k import Chars74kOptions, prepare_chars74k
from charjax.data.fonts import build_font_dataset
from charjax.data.handwriting import build_handwriting_dataset
from charjax.data.mixture import KEYWORDS, DataPart, build_mixture, mixture_path, parse_data
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


def default_handwriting_cache(image_size: int, data_dir: str | None = None) -> Path:
    """The cache `--data handwriting` uses (built with the default HandwritingOptions)."""
    root = Path(data_dir) if data_dir else cache_root()
    return root / f"handwriting-{image_size}"


def download_dir(data_dir: str | None = None) -> Path:
    """Where downloaded archives are kept, so preparing again needs no network."""
    return (Path(data_dir) if data_dir else cache_root()) / "downloads"


def default_chars74k_cache(options: Chars74kOptions, data_dir: str | None = None) -> Path:
    """The cache `--data chars74k:SUBSETS:SPLIT` uses (and `charjax data chars74k` fills)."""
    root = Path(data_dir) if data_dir else cache_root()
    return root / f"chars74k-{'-'.join(options.ordered)}-{options.split}-{options.size}"


def chars74k_options(part: DataPart, image_size: int) -> Chars74kOptions:
    """Chars74kOptions from a `chars74k[:SUBSETS[:SPLIT]]` part, other fields at defaults."""
    fields = {"size": image_size}
    if part.args:
        fields["subsets"] = tuple(s.strip() for s in part.args[0].split(","))
    if len(part.args) > 1:
        fields["split"] = part.args[1]
    return Chars74kOptions(**fields)


def _resolve_part(part: DataPart, image_size: int, data_dir: str | None, progress) -> Cache:
    if part.kind == "fonts":
        path = default_font_cache(image_size, data_dir)
        if not is_cache(path):
            build_font_dataset(path, size=image_size, progress=progress)
        return load_cache(path)
    if part.kind == "handwriting":
        path = default_handwriting_cache(image_size, data_dir)
        if not is_cache(path):
            build_handwriting_dataset(path, size=image_size)
        return load_cache(path)
    if part.kind == "chars74k":
        options = chars74k_options(part, image_size)
        path = default_chars74k_cache(options, data_dir)
        prepare_chars74k(path, options, download_dir=download_dir(data_dir), progress=progress)
        return load_cache(path)
    path = Path(part.args[0])
    if not path.exists():
        raise CharjaxError(
            f"unknown --data {part.text!r}: not {' or '.join(KEYWORDS)} and no such directory "
            "(prepare one with `charjax data fonts|chars74k|folder ...`)"
        )
    return load_cache(path)


def _check_size(cache: Cache, image_size: int) -> None:
    if cache.image_size != image_size:
        raise CharjaxError(
            f"dataset {cache.path} has {cache.image_size}px images but --image-size is "
            f"{image_size}; use --image-size {cache.image_size} or prepare the data again"
        )


def resolve_data(spec: str, image_size: int, data_dir: str | None = None, progress=True) -> Cache:
    """Returns the cache named by `spec`, building (or downloading) what is missing.

    Args:
      spec: "fonts", "handwriting", "chars74k[:SUBSETS[:SPLIT]]", a prepared cache, or several of
        these joined with "+", each optionally weighted with ":WEIGHT".
      image_size: the model input size; a cache of another size is refused.
      data_dir: where built datasets, downloads and mixtures go (default: `cache_root()`).
      progress: show progress bars while building.

    Returns:
      A Cache; for several parts, their mixture (itself a cache on disk).
    """
    # An existing directory is a cache even if its name holds '+' or ':'; the keywords win
    # over same-named folders in the working directory, as they always have.
    if spec not in KEYWORDS and Path(spec).is_dir():
        parts = [DataPart("path", (spec,), None, spec)]
    else:
        parts = parse_data(spec)
    caches = []
    for part in parts:
        cache = _resolve_part(part, image_size, data_dir, progress)
        _check_size(cache, image_size)
        caches.append(cache)
    if len(caches) == 1:
        return caches[0]
    root = Path(data_dir) if data_dir else cache_root()
    return build_mixture(mixture_path(root, parts, image_size), parts, caches)
