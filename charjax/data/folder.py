"""The folder source: a user's own character images, in class folders or listed in a CSV.

Two layouts are read:

    my_chars/Sample001/*.png ... my_chars/Sample062/*.png   class folders, Chars74K naming:
                                                            class i is Sample{i+1:03d}, in the
                                                            order 0-9, A-Z, a-z; digit classes
                                                            may also be named 0 .. 9
    my_chars/manifest.csv  (or any .csv given as PATH)      lines `path,label`, label one
                                                            character, paths relative to the
                                                            CSV's folder; a header is optional

Letters cannot name class folders: `a` and `A` are the same folder on the case-insensitive
file systems of macOS and Windows, so one would silently swallow the other. Files may sit in
nested folders inside a class folder. Anything that is not a readable image, and any image with
too little ink to read (`charjax.preprocess.has_ink`), is skipped, counted and named in the
report. Every image goes through `charjax.preprocess.preprocess`.
"""

import csv
import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from charjax.data.cache import write_cache
from charjax.errors import CharjaxError
from charjax.labels import CLASSES, NUM_CLASSES, char_to_index, sample_dir_name
from charjax.preprocess import NO_INK, PreprocessSpec, has_ink, preprocess

MANIFEST_NAME = "manifest.csv"
_SAMPLE_DIR = re.compile(r"sample(\d{3})", re.IGNORECASE)


@dataclass(frozen=True)
class FolderOptions:
    """How to turn an image folder into a dataset; all defaults live here.

    Attributes:
      size: image side in pixels (the PreprocessSpec size).
      val_fraction, test_fraction: share of each class's images held out, chosen at random.
      seed: seeds that choice.
    """

    size: int = 32
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self):
        PreprocessSpec(size=self.size)  # validates the size with the usual message
        check_split_fractions(self.val_fraction, self.test_fraction)


@dataclass
class FolderReport:
    """What was read: how many images per class, and which files were skipped and why."""

    root: Path
    layout: str  # "class folders" or "manifest NAME"
    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return int(self.counts.sum())

    def skip(self, reason: str, path: Path) -> None:
        try:
            shown = str(path.relative_to(self.root))
        except ValueError:
            shown = str(path)
        self.skipped.setdefault(reason, []).append(shown)

    def summary(self, first: int = 3) -> str:
        n_skipped = sum(len(v) for v in self.skipped.values())
        lines = [f"{self.root} ({self.layout}): {self.used} images used, {n_skipped} skipped"]
        for reason, names in sorted(self.skipped.items(), key=lambda kv: -len(kv[1])):
            more = f", ... (+{len(names) - first})" if len(names) > first else ""
            lines.append(f"  skipped, {reason}: {len(names)} ({', '.join(names[:first])}{more})")
        empty = [CLASSES[i] for i in np.flatnonzero(self.counts == 0)]
        if empty:
            lines.append(f"  classes without images ({len(empty)}): {' '.join(empty)}")
        return "\n".join(lines)


def class_of_folder(name: str) -> int | None:
    """Class index of a class folder name (`Sample001`..`Sample062`, or a digit `0`..`9`).

    Returns None for names that are not class folders; raises CharjaxError for single
    letters and out-of-range SampleNNN, which are surely meant as classes.
    """
    m = _SAMPLE_DIR.fullmatch(name)
    if m:
        index = int(m.group(1)) - 1
        if not 0 <= index < NUM_CLASSES:
            raise CharjaxError(f"class folder {name} is out of range (Sample001..Sample062)")
        return index
    if len(name) == 1 and name.isdigit():
        return int(name)
    if len(name) == 1 and name.isascii() and name.isalpha():
        raise CharjaxError(
            f"class folder {name!r} is named by a letter, which is ambiguous on "
            "case-insensitive file systems (a and A are one folder there); name it "
            f"{sample_dir_name(char_to_index(name))} (Sample001..Sample062 in the order "
            "0-9, A-Z, a-z)"
        )
    return None


def _read_manifest(manifest: Path) -> list[tuple[Path, int]]:
    try:
        text = manifest.read_text(encoding="utf-8-sig")  # -sig: Excel writes a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise CharjaxError(f"cannot read manifest {manifest}: {e}") from None
    items = []
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise CharjaxError(f"{manifest}:{line_no}: expected `path,label`, got {row[0]!r}")
        path, label = row[0].strip(), row[1].strip()
        if label not in CLASSES or len(label) != 1:
            if not items and line_no == 1:
                continue  # a header line such as `path,label`
            raise CharjaxError(
                f"{manifest}:{line_no}: label {label!r} is not one character of 0-9, A-Z, a-z"
            )
        items.append((manifest.parent / path, CLASSES.index(label)))
    return items


def _walk_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def read_folder(path: str | os.PathLike) -> list[tuple[Path, int]]:
    """Lists the (file, class index) pairs of an image folder or CSV manifest.

    Args:
      path: a folder of class folders, a folder holding `manifest.csv`, or a .csv file.

    Returns:
      (file, class index) pairs in a fixed order; files are not opened yet.
    """
    root = Path(path)
    if not root.exists():
        raise CharjaxError(f"no such folder or manifest: {root}")
    if root.is_file() or (root / MANIFEST_NAME).is_file():
        return _read_manifest(root if root.is_file() else root / MANIFEST_NAME)
    items, unknown = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.startswith((".", "__")):  # .git, __MACOSX from zip files
            continue
        index = class_of_folder(sub.name)
        if index is None:
            unknown.append(sub.name)
            continue
        items += [(f, index) for f in _walk_files(sub)]
    if unknown:
        raise CharjaxError(
            f"{root}: folder(s) {', '.join(unknown[:3])} are not class folders; name them "
            "Sample001..Sample062 (0-9, A-Z, a-z) or 0..9, or list the files in a manifest.csv"
        )
    if not items:
        raise CharjaxError(
            f"{root} has no class folders with files (expected Sample001..Sample062, digits "
            f"0..9, or a {MANIFEST_NAME})"
        )
    return items


def _open_image(path: Path) -> Image.Image | str:
    """The image, or why it cannot be used."""
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                return "animated (several frames)"
            im.load()  # decode now, so a truncated file fails here
            return im.copy()
    except FileNotFoundError:
        return "missing"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "unreadable image"


def load_folder_images(
    path: str | os.PathLike, spec: PreprocessSpec, *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, FolderReport]:
    """Reads and preprocesses every usable image of a folder or manifest.

    Args:
      path: see `read_folder`.
      spec: the preprocessing to apply (a checkpoint's own, when evaluating).
      progress: show a progress bar on stderr.

    Returns:
      (images uint8 [N, size, size], labels int32 [N], FolderReport). Raises CharjaxError if
      no file is a usable image.
    """
    root = Path(path)
    items = read_folder(root)
    is_manifest = root.is_file() or (root / MANIFEST_NAME).is_file()
    layout = f"manifest {root.name if root.is_file() else MANIFEST_NAME}"
    report = FolderReport(
        root if root.is_dir() else root.parent, layout if is_manifest else "class folders"
    )
    images, labels = [], []
    for file, label in tqdm(
        items, desc="reading images", unit="img", disable=not progress, file=sys.stderr
    ):
        image = _open_image(file)
        if isinstance(image, str):
            report.skip(image, file)
            continue
        x = preprocess(image, spec)
        if not has_ink(x):  # a blank image teaches nothing and scores a guess
            report.skip(NO_INK, file)
            continue
        images.append(x)
        labels.append(label)
        report.counts[label] += 1
    if not images:
        reasons = ", ".join(f"{len(v)} {k}" for k, v in report.skipped.items())
        raise CharjaxError(f"{root}: no usable image among {len(items)} files ({reasons})")
    return np.stack(images), np.asarray(labels, np.int32), report


def check_split_fractions(val_fraction: float, test_fraction: float, test_needed=False) -> None:
    """The held-out fractions of a split: each in [0, 1) (test above 0 when the source has no
    other test set) and leaving something to train on."""
    low = test_fraction > 0 if test_needed else test_fraction >= 0
    if not (0 <= val_fraction < 1 and low and val_fraction + test_fraction < 1):
        raise CharjaxError(
            f"val and test fractions must be >= 0{' (test above 0)' if test_needed else ''} "
            f"and sum below 1, got {val_fraction} and {test_fraction}"
        )


def split_per_class(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Random train/val/test split index (0/1/2) per example, drawn within each class."""
    rng = np.random.default_rng(seed)
    splits = np.zeros(len(labels), np.uint8)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        # A class with very few images keeps at least one for training.
        while n_test + n_val >= len(idx) and n_test + n_val > 0:
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        splits[idx[:n_test]] = 2
        splits[idx[n_test : n_test + n_val]] = 1
    return splits


def build_folder_dataset(
    path: str | os.PathLike,
    out: str | os.PathLike,
    options: FolderOptions | None = None,
    *,
    progress: bool = True,
    **kw,
) -> tuple[Path, FolderReport]:
    """Builds a dataset cache at `out` from an image folder or manifest.

    Args:
      path: see `read_folder`.
      out: the cache directory to write (replaced atomically if it exists).
      options: a FolderOptions; keyword arguments override its fields.
      progress: show a progress bar on stderr.

    Returns:
      (path of the cache, FolderReport).
    """
    opts = dataclasses.replace(options or FolderOptions(), **kw)
    spec = PreprocessSpec(size=opts.size)
    images, labels, report = load_folder_images(path, spec, progress=progress)
    splits = split_per_class(labels, opts.val_fraction, opts.test_fraction, opts.seed)
    meta = {
        "source": "folder",
        "root": str(Path(path).resolve()),
        "preprocess": spec.to_dict(),
        # A folder says nothing about writers, so all images form one group.
        "group_names": [Path(path).name],
        "val_fraction": opts.val_fraction,
        "test_fraction": opts.test_fraction,
        "seed": opts.seed,
        "skipped": {reason: len(files) for reason, files in report.skipped.items()},
    }
    groups = np.zeros(len(labels), np.int32)
    return write_cache(out, images, labels, groups, splits, meta), report
