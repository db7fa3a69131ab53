"""The one on-disk dataset format that every source prepares into.

A cache is a directory:

    images.npy   uint8 [N, H, W]   preprocessed (ink bright on black), see charjax.preprocess
    labels.npy   int32 [N]         class index in charjax.labels.CLASSES order
    groups.npy   int32 [N]         font face / writer id, so splits can keep a group together
    splits.npy   uint8 [N]         index into SPLITS (0 train, 1 val, 2 test)
    meta.json    source, classes, image size, preprocessing spec, counts, group names, version

It is written into a hidden temporary sibling and renamed into place only when complete, so a
directory at the final path is always whole (`charjax.atomic.atomic_path`); a killed build
leaves at most a hidden `.NAME.tmp-*` directory that nothing loads, and a later build of NAME
removes it once it has been untouched for `STALE_TEMP_SECONDS`. Arrays are read memory-mapped
and never unpickled. `describe` says what one holds (`charjax data info`; its contact sheet is
`charjax.viz.contact_sheet`).
"""

import datetime
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charjax.atomic import atomic_path, temp_siblings, write_json_atomic
from charjax.errors import CharjaxError
from charjax.labels import CLASSES, NUM_CLASSES, SAME_SHAPE_LETTERS

FORMAT_VERSION = 1
# A build writes its temp directory in seconds (the arrays are rendered before it exists), so
# one untouched for this long belongs to a build that was killed, not to one still running.
STALE_TEMP_SECONDS = 600
SPLITS = ("train", "val", "test")
_ARRAYS = {"images": np.uint8, "labels": np.int32, "groups": np.int32, "splits": np.uint8}


@dataclass(frozen=True)
class Cache:
    """A loaded dataset cache. Arrays are memory-mapped (read-only)."""

    path: Path
    meta: dict[str, Any]
    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # int32 [N]
    groups: np.ndarray  # int32 [N]
    splits: np.ndarray  # uint8 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def indices(self, split: str) -> np.ndarray:
        """Example indices of one split ("train", "val", "test") or "all"."""
        if split == "all":
            return np.arange(len(self))
        if split not in SPLITS:
            raise CharjaxError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}, all")
        return np.flatnonzero(self.splits == SPLITS.index(split))

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """The images and labels of one split, loaded into memory.

        A mixture with `:nocase` parts adds "nocase" (bool [n]): the image is of such a part,
        so the loss takes either case of a same-shape letter (`charjax.data.mixture`).
        """
        idx = self.indices(split)
        arrays = {"image": np.asarray(self.images[idx]), "label": np.asarray(self.labels[idx])}
        ranges = self.meta.get("nocase_groups")
        if ranges:
            groups = np.asarray(self.groups[idx])
            arrays["nocase"] = np.any([(groups >= lo) & (groups < hi) for lo, hi in ranges], 0)
        return arrays


def write_cache(
    path,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    splits: np.ndarray,
    meta: dict[str, Any],
) -> Path:
    """Writes a complete cache atomically and returns its path.

    Args:
      path: the final directory. An existing cache there is replaced only once the new one is
        complete.
      images, labels, groups, splits: see the module docstring for dtypes and shapes.
      meta: at least "source" and "preprocess" (a PreprocessSpec dict); counts, classes, image
        size and the format version are filled in here.
    """
    path = Path(path)
    if path.exists() and not is_cache(path) and (not path.is_dir() or any(path.iterdir())):
        raise CharjaxError(f"{path} exists and is not a charjax dataset; refusing to replace it")
    n = len(labels)
    if images.ndim != 3 or images.shape[0] != n or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be [N, S, S] with N={n}, got {images.shape}")
    if not (len(groups) == len(splits) == n):
        raise ValueError("labels, groups and splits must have one entry per image")
    meta = dict(meta)
    meta.update(
        format_version=FORMAT_VERSION,
        classes=CLASSES,
        image_size=int(images.shape[1]),
        num_examples=int(n),
        counts={s: int((np.asarray(splits) == i).sum()) for i, s in enumerate(SPLITS)},
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    arrays = dict(images=images, labels=labels, groups=groups, splits=splits)
    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for name, dtype in _ARRAYS.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arrays[name], dtype=dtype))
        # meta.json last: its presence inside the renamed directory is the completion mark.
        write_json_atomic(tmp / "meta.json", meta)
    return path


def remove_stale_temps(path) -> list[Path]:
    """Removes the `.NAME.tmp-*` directories that killed builds of the cache at `path` left
    beside it (untouched for `STALE_TEMP_SECONDS`); returns what it removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for tmp in temp_siblings(path):
        try:
            newest = max(p.stat().st_mtime for p in [tmp, *tmp.rglob("*")])
        except OSError:  # gone meanwhile: its build finished or was cleaned
            continue
        if tmp.is_dir() and time.time() - newest > STALE_TEMP_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def class_counts(cache: Cache) -> np.ndarray:
    """Examples per split and class: int64 [3, 62] (rows in SPLITS order)."""
    labels = np.asarray(cache.labels)
    splits = np.asarray(cache.splits)
    return np.stack(
        [np.bincount(labels[splits == k], minlength=NUM_CLASSES) for k in range(len(SPLITS))]
    )


def describe(cache: Cache) -> str:
    """A few lines about a cache: source, size, preprocessing, split and class counts."""
    meta = cache.meta
    counts = class_counts(cache)
    spec = ", ".join(f"{k}={v}" for k, v in meta.get("preprocess", {}).items())
    details = [f"{k} {meta[k]}" for k in ("variants", "seed") if k in meta]
    groups = meta.get("group_names", [])
    lines = [
        f"dataset     {cache.path}",
        f"source      {meta.get('source', '?')} ({len(groups)} group{'s' * (len(groups) != 1)}"
        + "".join(f", {d}" for d in details)
        + ")",
        f"images      {len(cache)} x {cache.image_size}x{cache.image_size} uint8, "
        f"created {meta.get('created', '?')}",
        f"preprocess  {spec}",
        "splits      "
        + " | ".join(f"{s} {int(n)}" for s, n in zip(SPLITS, counts.sum(1), strict=True)),
    ]
    if meta.get("split_by"):
        note = f" ({meta['split_note']})" if meta.get("split_note") else ""
        lines.append(f"split by    {meta['split_by']}{note}")
    for split, fams in meta.get("families", {}).items():
        lines.append(f"  {split:5} families: {', '.join(fams) or '-'}")
    not_taught = f", not teaching the case of {' '.join(SAME_SHAPE_LETTERS)} (:nocase)"
    for part in meta.get("parts", []):  # a mixture's parts, as --data wrote them
        weight = "" if part.get("weight") is None else f" weight {part['weight']:g},"
        case = not_taught if part.get("nocase") else ""
        lines.append(f"  part      {part['data']}:{weight} {part.get('train_images')} train{case}")
    if meta.get("skipped"):
        lines.append("skipped     " + ", ".join(f"{n} {r}" for r, n in meta["skipped"].items()))
    cells = ["/".join(str(int(n)) for n in counts[:, c]) for c in range(NUM_CLASSES)]
    if len(set(cells)) == 1:  # font datasets: every class alike, one line says it
        lines.append(f"per class   train/val/test {cells[0]} for each of the {NUM_CLASSES}")
        return "\n".join(lines)
    lines.append("per class   train/val/test")
    width = max(len(s) for s in cells)
    rows = (NUM_CLASSES + 3) // 4
    for r in range(rows):
        row = [f"{CLASSES[c]} {cells[c]:<{width}}" for c in range(r, NUM_CLASSES, rows)]
        lines.append("  " + "    ".join(row).rstrip())
    return "\n".join(lines)


def is_cache(path) -> bool:
    """True when `path` holds a complete cache of this format version."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format_version") == FORMAT_VERSION


def load_cache(path) -> Cache:
    """Opens a cache for reading, or raises CharjaxError saying what is wrong with it."""
    path = Path(path)
    if not path.is_dir():
        raise CharjaxError(f"no dataset at {path} (not a directory)")
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise CharjaxError(
            f"{path} is not a complete charjax dataset (no meta.json); "
            "prepare it again with `charjax data ...`"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise CharjaxError(f"{meta_path} is corrupt ({e}); prepare the dataset again") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CharjaxError(
            f"{path} has dataset format version {version}, this charjax reads version "
            f"{FORMAT_VERSION}; prepare the dataset again"
        )
    arrays = {}
    for name, dtype in _ARRAYS.items():
        try:
            arr = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CharjaxError(f"{path / (name + '.npy')} is missing or corrupt: {e}") from None
        if arr.dtype != dtype:
            raise CharjaxError(f"{path / (name + '.npy')} has dtype {arr.dtype}, expected {dtype}")
        arrays[name] = arr
    n = meta.get("num_examples")
    if any(a.shape[0] != n for a in arrays.values()) or arrays["images"].ndim != 3:
        raise CharjaxError(f"{path} is inconsistent (array lengths differ from meta.json)")
    return Cache(path=path, meta=meta, **arrays)
