"""Turns a `--data` value into a prepared cache, building what is missing.

fonts                   the font dataset, built on first use under the user's cache folder
handwriting             synthetic handwriting (`charjax.data.handwriting`, default options),
                        built on first use under the same folder
chars74k[:SUBSETS[:SPLIT]]
                        Chars74K (default subsets font,hand,img_good; split random),
                        downloaded and prepared on first use under the same folder
folder:IMAGES           your own images, class folders or a manifest as `charjax data folder`
                        reads them, prepared on use (again when the files change) under the
                        same folder; one image of each class that has >= 3 is held back for
                        validation, the rest trains, so a handful per class is enough
PATH                    any prepared cache directory (from `charjax data ...`)
A+B, A:0.7+B:0.3        several of the above as one dataset, optionally weighted (see
                        `charjax.data.mixture` for the syntax and what weights do)
"""

import hashlib
import os
from pathlib import Path

import numpy as np

from charjax.data.cache import Cache, is_cache, load_cache, write_cache
from charjax.data.chars74k import Chars74kOptions, prepare_chars74k
from charjax.data.folder import load_folder_images
from charjax.data.fonts import build_font_dataset
from charjax.data.handwriting import build_handwriting_dataset
from charjax.data.mixture import KEYWORDS, DataPart, build_mixture, mixture_path, parse_data
from charjax.errors import CharjaxError
from charjax.preprocess import PreprocessSpec


def cache_root() -> Path:
    """Where built datasets live: $CHARJAX_CACHE, else $XDG_CACHE_HOME/charjax, else ~/.cache."""
    if os.environ.get("CHARJAX_CACHE"):
        return Path(os.environ["CHARJAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charjax"


def _root(data_dir: str | None) -> Path:
    """`--data-dir` when given, else `cache_root()`."""
    return Path(data_dir) if data_dir else cache_root()


def default_font_cache(image_size: int, data_dir: str | None = None) -> Path:
    return _root(data_dir) / f"fonts-{image_size}"


def default_handwriting_cache(image_size: int, data_dir: str | None = None) -> Path:
    """The cache `--data handwriting` uses (built with the default HandwritingOptions)."""
    return _root(data_dir) / f"handwriting-{image_size}"


def download_dir(data_dir: str | None = None) -> Path:
    """Where downloaded archives are kept, so preparing again needs no network."""
    return _root(data_dir) / "downloads"


def default_chars74k_cache(options: Chars74kOptions, data_dir: str | None = None) -> Path:
    """The cache `--data chars74k:SUBSETS:SPLIT` uses (and `charjax data chars74k` fills)."""
    return _root(data_dir) / f"chars74k-{'-'.join(options.ordered)}-{options.split}-{options.size}"


def chars74k_options(part: DataPart, image_size: int) -> Chars74kOptions:
    """Chars74kOptions from a `chars74k[:SUBSETS[:SPLIT]]` part, other fields at defaults."""
    fields = {"size": image_size}
    if part.args:
        fields["subsets"] = tuple(s.strip() for s in part.args[0].split(","))
    if len(part.args) > 1:
        fields["split"] = part.args[1]
    return Chars74kOptions(**fields)


def hold_back_one_per_class(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Split index per example (0 train, 1 val): one random image of every class that has
    at least 3 goes to val; a class with fewer keeps them all for training."""
    rng = np.random.default_rng(seed)
    splits = np.zeros(len(labels), np.uint8)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        if len(idx) >= 3:
            splits[rng.choice(idx)] = 1
    return splits


def _fingerprint(root: Path) -> str:
    """Names, sizes and modification times of every file under `root`, hashed."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    text = "\n".join(
        f"{p.relative_to(root.parent)} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files
    )
    return hashlib.sha256(text.encode()).hexdigest()


def folder_cache(folder: str, image_size: int, data_dir: str | None, progress=True) -> Cache:
    """The cache of `--data folder:FOLDER`, prepared again whenever its files change."""
    root = Path(folder).resolve()
    if not root.exists():
        raise CharjaxError(f"--data folder:{folder}: no such folder")
    key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    out = _root(data_dir) / f"folder-{key}-{image_size}"
    fingerprint = _fingerprint(root)
    if is_cache(out) and load_cache(out).meta.get("fingerprint") == fingerprint:
        return load_cache(out)
    spec = PreprocessSpec(size=image_size)
    images, labels, report = load_folder_images(root, spec, progress=progress)
    meta = {
        "source": "folder",
        "root": str(root),
        "preprocess": spec.to_dict(),
        "group_names": [root.name],  # a folder says nothing about writers: one group
        "split_by": "one image of each class with >= 3 held back for val",
        "fingerprint": fingerprint,
        "skipped": {reason: len(files) for reason, files in report.skipped.items()},
    }
    groups = np.zeros(len(labels), np.int32)
    return load_cache(
        write_cache(out, images, labels, groups, hold_back_one_per_class(labels), meta)
    )


def _resolve_part(part: DataPart, image_size: int, data_dir: str | None, progress) -> Cache:
    if part.kind == "folder":
        return folder_cache(part.args[0], image_size, data_dir, progress)
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


def data_parts(spec: str) -> list[DataPart]:
    """The parts of a `--data` value, as `resolve_data` reads them.

    An existing directory is one cache even if its name holds '+' or ':'; the keywords win
    over same-named folders in the working directory, as they always have.
    """
    if spec not in KEYWORDS and Path(spec).is_dir():
        return [DataPart("path", (spec,), None, spec)]
    return parse_data(spec)


def resolve_data(spec: str, image_size: int, data_dir: str | None = None, progress=True) -> Cache:
    """Returns the cache named by `spec`, building (or downloading) what is missing.

    Args:
      spec: "fonts", "handwriting", "chars74k[:SUBSETS[:SPLIT]]", "folder:IMAGES", a prepared
        cache, or several of these joined with "+", each optionally weighted with ":WEIGHT".
      image_size: the model input size; a cache of another size is refused.
      data_dir: where built datasets, downloads and mixtures go (default: `cache_root()`).
      progress: show progress bars while building.

    Returns:
      A Cache; for several parts, their mixture (itself a cache on disk).
    """
    parts = data_parts(spec)
    caches = []
    for part in parts:
        cache = _resolve_part(part, image_size, data_dir, progress)
        _check_size(cache, image_size)
        caches.append(cache)
    if len(caches) == 1 and not parts[0].nocase:  # a flagged part needs the mixture's record
        return caches[0]
    return build_mixture(mixture_path(_root(data_dir), parts, image_size), parts, caches)
