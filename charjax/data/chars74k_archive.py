"""Reading PNGs out of a dataset archive safely, and preprocessing them in parallel.

Members are read straight into memory and decoded there; nothing from an archive is written
to disk, so no member can land outside the output, and there is no half-unpacked tree to
clean up or resume. Every member is still vetted with tarfile's "data" extraction filter, so
an archive with absolute paths, `..`, links or device files is refused as a whole, loudly,
rather than silently skipped.

What was read can be kept in stage files (.npz, never pickled) beside the output, so a run
interrupted after one archive does not read that archive again. `read_subsets` turns the
Chars74K layout (FOLDER/SampleCCC/imgCCC-NNNNN.png) into labelled arrays.
"""

import collections
import concurrent.futures
import hashlib
import io
import multiprocessing
import os
import re
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from charjax.atomic import atomic_path
from charjax.errors import CharjaxError
from charjax.labels import NUM_CLASSES
from charjax.preprocess import PreprocessSpec, preprocess

OK, UNREADABLE, BLANK = 0, 1, 2
SKIP_REASONS = {UNREADABLE: "unreadable image", BLANK: "blank after preprocessing"}

_MAX_MEMBER_BYTES = 64 << 20  # a character PNG is kilobytes; refuse decompression bombs
_BATCH = 256  # images per decode task
_POOL_MIN_BYTES = 8 << 20  # worker start-up (~1 s each) pays off only on large archives
_STAGE_VERSION = 1
# A destination that exists nowhere: the data filter only does path arithmetic against it.
_NOWHERE = os.path.abspath(os.path.join(os.sep, "charjax-archive-root"))


class CorruptArchive(CharjaxError):
    """An archive that cannot be read to its end."""


def vet_member(member: tarfile.TarInfo, archive: str) -> None:
    """Raises CharjaxError unless `member` would be safe to extract into any folder."""
    try:
        safe = tarfile.data_filter(member, _NOWHERE)
        problem = None
    except tarfile.FilterError as e:
        problem = str(e)
    else:
        # The filter quietly strips a leading "/" and allows links that stay inside; a
        # dataset of PNGs has neither, so either one means the archive is not what we expect.
        if safe.name != member.name:
            problem = f"{member.name!r} has an absolute path"
        elif member.issym() or member.islnk():
            problem = f"{member.name!r} is a link"
    if problem:
        raise CharjaxError(f"{archive}: refusing an unsafe archive: {problem}")


def _tar_members(path: Path, wanted: Callable[[str], bool], bar: tqdm) -> Iterator[tuple]:
    """(name, bytes) of the wanted regular files of a .tgz, vetting every member."""
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        for member in tar:
            bar.update(raw.tell() - bar.n)  # compressed bytes read: an honest ETA
            vet_member(member, path.name)
            if not (member.isfile() and wanted(member.name)):
                continue
            if member.size > _MAX_MEMBER_BYTES:
                raise CharjaxError(f"{path.name}: {member.name} is implausibly large")
            yield member.name, tar.extractfile(member).read()


def _tree_files(root: Path, folders: list[str], wanted, bar: tqdm) -> Iterator[tuple]:
    """(name relative to root, bytes) of the wanted files in an unpacked archive."""
    for folder in folders:
        for file in sorted((root / folder).rglob("*.png")):
            name = file.relative_to(root).as_posix()
            if file.is_file() and wanted(name):
                bar.update()
                yield name, file.read_bytes()


def _decode_batch(blobs: list[bytes], spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """PNG bytes -> (images uint8 [n, S, S], status [n]); runs in worker processes."""
    spec_ = PreprocessSpec.from_dict(spec)
    images = np.zeros((len(blobs), spec_.size, spec_.size), np.uint8)
    status = np.full(len(blobs), OK, np.uint8)
    for i, blob in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                im.load()
                images[i] = preprocess(im, spec_)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            status[i] = UNREADABLE
            continue
        if not images[i].any():  # no contrast at all: a label on an empty picture
            status[i] = BLANK
    return images, status


def _batched(items: Iterator) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode(items: Iterator, spec: PreprocessSpec, workers: int) -> Iterator[tuple]:
    """Yields (name, image, status) in input order, decoding in `workers` processes."""
    if workers <= 1:
        for batch in _batched(items):
            images, status = _decode_batch([b for _, b in batch], spec.to_dict())
            yield from zip([n for n, _ in batch], images, status, strict=True)
        return
    # "spawn": forking a process that has imported JAX (the trainer) can deadlock. A bounded
    # window of batches in flight keeps memory flat however large the archive.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        window: collections.deque = collections.deque()
        for batch in _batched(items):
            future = pool.submit(_decode_batch, [b for _, b in batch], spec.to_dict())
            window.append(([n for n, _ in batch], future))
            while len(window) > 2 * workers or (window and window[0][1].done()):
                names, future = window.popleft()
                yield from zip(names, *future.result(), strict=True)
        while window:
            names, future = window.popleft()
            yield from zip(names, *future.result(), strict=True)


def read_pngs(
    source: Path,
    folders: list[str],
    wanted: Callable[[str], bool],
    spec: PreprocessSpec,
    *,
    workers: int = 0,
    progress: bool = False,
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Preprocessed PNGs from a .tgz archive, or from the same archive unpacked in a folder.

    Args:
      source: a .tgz file, or the folder the archive was unpacked into.
      folders: for an unpacked folder, the sub-folders to search (relative to `source`).
      wanted: which member names (as stored in the archive) to read.
      spec: the preprocessing to apply.
      workers: decoding processes; 0 picks one per CPU (up to 8) for large archives.
      progress: show a progress bar on stderr.

    Yields:
      (member name, uint8 [S, S] image, status: OK, UNREADABLE or BLANK). Raises
      CorruptArchive when the archive ends early or is damaged, CharjaxError when unsafe.
    """
    size = 0 if source.is_dir() else source.stat().st_size
    if workers == 0:
        workers = min(os.cpu_count() or 1, 8) if size > _POOL_MIN_BYTES else 1
    if source.is_dir():
        bar = tqdm(desc="reading images", unit="img", disable=not progress, file=sys.stderr)
        items = _tree_files(source, folders, wanted, bar)
    else:
        bar = tqdm(
            desc=f"reading {source.name}",
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
            file=sys.stderr,
        )
        items = _tar_members(source, wanted, bar)
    try:
        with bar:
            yield from _decode(items, spec, workers)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CorruptArchive(f"{source.name} is truncated or corrupt ({e})") from None
    except concurrent.futures.BrokenExecutor:
        # Typically a script without `if __name__ == "__main__":`, which "spawn" re-runs.
        raise CharjaxError(
            "a decoding worker process died; run again with --workers 1 (from Python: "
            "workers=1, or call under `if __name__ == '__main__':`)"
        ) from None


def stage_file(parts: Path, subset: str, archive_id: str, spec: PreprocessSpec) -> Path:
    """Where what was read of `subset` from one archive, with one spec, is kept."""
    key = f"{_STAGE_VERSION}|{archive_id}|{sorted(spec.to_dict().items())}"
    token = hashlib.sha256(key.encode()).hexdigest()
    return parts / f"{subset}-{token[:16]}.npz"


def save_stage(path: Path, data: dict) -> None:
    """Keeps images, labels, nums and skip counts read from an archive (no pickle)."""
    arrays = {k: data[k] for k in ("images", "labels", "nums")}
    reasons = sorted(data["skipped"])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a stage file is whole or absent
        np.savez(
            f,
            **arrays,
            skip_reasons=np.asarray(reasons, dtype=str),
            skip_counts=np.asarray([data["skipped"][r] for r in reasons], np.int64),
        )


def load_stage(path: Path) -> dict | None:
    """What `save_stage` kept, or None when there is nothing usable (then read again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("images", "labels", "nums")}
            data["skipped"] = dict(
                zip(z["skip_reasons"].tolist(), z["skip_counts"].tolist(), strict=True)
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return data


# Where a Chars74K member lives: FOLDER/SampleCCC/imgCCC-NNNNN.png (class CCC from 1).
_MEMBER = re.compile(r"(?P<folder>.+)/Sample(?P<cls>\d{3})/img\d+-(?P<num>\d+)\.png")


def read_subsets(
    source: Path, subsets: list, spec: PreprocessSpec, workers: int, progress: bool
) -> dict[str, dict]:
    """Decodes and preprocesses the subsets held by one archive (or its unpacked folder).

    `subsets` are `charjax.data.chars74k.Subset`s: each names its folder inside the archive.

    Returns, per subset, arrays sorted by member name (so the split does not depend on the
    order inside the archive): images, labels, nums (the number after the dash), and the
    counts of skipped files by reason.
    """
    by_folder = {s.folder: s.name for s in subsets}

    def subset_of(name: str) -> str | None:
        m = _MEMBER.fullmatch(name.removeprefix("./"))
        return by_folder.get(m["folder"]) if m else None

    got = {s.name: collections.defaultdict(list) for s in subsets}
    skipped = {s.name: collections.Counter() for s in subsets}
    folders = list(by_folder)
    for name, image, status in read_pngs(
        source, folders, subset_of, spec, workers=workers, progress=progress
    ):
        m = _MEMBER.fullmatch(name.removeprefix("./"))
        subset, label = by_folder[m["folder"]], int(m["cls"]) - 1
        if not 0 <= label < NUM_CLASSES:
            skipped[subset]["folder outside Sample001..Sample062"] += 1
        elif status != OK:
            skipped[subset][SKIP_REASONS[status]] += 1
        else:
            for key, value in (("names", name), ("images", image), ("labels", label)):
                got[subset][key].append(value)
            got[subset]["nums"].append(int(m["num"]))
    result = {}
    for s in subsets:
        d = got[s.name]
        if not d["names"]:
            raise CharjaxError(
                f"{source.name} has no usable images under {s.folder}/SampleNNN/; is it the "
                f"Chars74K English {s.archive}?"
            )
        order = np.argsort(np.asarray(d["names"]), kind="stable")
        result[s.name] = {
            "images": np.stack(d["images"])[order],
            "labels": np.asarray(d["labels"], np.int32)[order],
            "nums": np.asarray(d["nums"], np.int32)[order],
            "skipped": dict(skipped[s.name]),
        }
    return result
