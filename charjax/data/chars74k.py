"""The Chars74K source: the real English dataset, downloaded, vetted, split and cached.

    charjax data chars74k --subsets font,hand          # or, from Python:
    prepare_chars74k(Path("data/c74k"), Chars74kOptions(subsets=("hand",)), download_dir=...)

Subsets and where they live in the official archives (class i is folder Sample{i+1:03d}):

    font      EnglishFnt.tgz  English/Fnt/SampleNNN/imgNNN-FFFFF.png    62,992 font renderings
    hand      EnglishHnd.tgz  English/Hnd/Img/SampleNNN/imgNNN-WWW.png   3,410 tablet drawings
    img_good  EnglishImg.tgz  English/Img/GoodImg/Bmp/SampleNNN/*.png    7,705 photo crops
    img_bad   EnglishImg.tgz  English/Img/BadImag/Bmp/SampleNNN/*.png    4,798 poorer photo crops

The flow: find or download each archive (`download`: resumable, retried, checked) -> read
the needed PNGs straight out of it, every member vetted (`chars74k_archive`) -> `preprocess`
-> stage each finished subset as an .npz beside the output, so an interrupted run keeps what
it finished -> split -> `cache.write_cache`, which is atomic: a cache that reads as complete
is complete. A run whose cache is already complete touches neither network nor archives.

All subsets use the default PreprocessSpec, photos included. On cropped photos `preprocess`
does what is wanted: the background level comes from the border, polarity "auto" finds light
text on dark signs as well as dark on light, and the ink crop is at most the photo itself,
since each photo is already cropped to its character. One spec also keeps one cache per run
and lets Chars74K mix with the font dataset, whose spec it shares.
"""

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charjax.data import chars74k_archive
from charjax.data.cache import SPLITS, is_cache, write_cache
from charjax.data.chars74k_archive import CorruptArchive, load_stage, save_stage, stage_file
from charjax.data.download import download, verify
from charjax.data.folder import check_split_fractions, split_per_class
from charjax.errors import CharjaxError
from charjax.preprocess import PreprocessSpec

OFFICIAL_URL = "http://www.ee.surrey.ac.uk/CVSSP/demos/chars74k/"
URL_ENV = "CHARJAX_CHARS74K_URL"
# Filled in from the official files once verified; until then the sha256 of what was used
# is recorded in the cache meta, and `--sha256 NAME=HEX` checks a known one.
PINNED_SHA256: dict[str, str] = {}
_VERSION = 1  # of this source's preparation; part of the "already prepared?" key


@dataclass(frozen=True)
class Subset:
    """One part of Chars74K English: its archive, its folder inside, what groups it."""

    name: str
    archive: str
    folder: str
    groups: str  # what the number in imgCCC-NNN.png is: "font", "writer", or "" (nothing)
    count: int  # images in the official release


SUBSETS = {
    s.name: s
    for s in (
        Subset("font", "EnglishFnt.tgz", "English/Fnt", "font", 62992),
        Subset("hand", "EnglishHnd.tgz", "English/Hnd/Img", "writer", 3410),
        Subset("img_good", "EnglishImg.tgz", "English/Img/GoodImg/Bmp", "", 7705),
        Subset("img_bad", "EnglishImg.tgz", "English/Img/BadImag/Bmp", "", 4798),
    )
}
ARCHIVE_MB = {"EnglishFnt.tgz": 51, "EnglishHnd.tgz": 13, "EnglishImg.tgz": 128}  # about
SPLIT_MODES = ("random", "writer")


@dataclass(frozen=True)
class Chars74kOptions:
    """How to prepare Chars74K; all defaults live here.

    Attributes:
      subsets: names from SUBSETS. img_bad is left out by default: those are the photos the
        dataset's authors marked as poor.
      split: "random" (each class of each subset 80/20 train+val/test at random, like the old
        project) or "writer" (the hand subset by writer, so no writer is in two splits; the
        other subsets still split at random).
      size: image side in pixels (the PreprocessSpec size).
      val_fraction: share of each class (or of the writers) for validation, carved out of
        the 80% that is not test, so train is 70%.
      test_fraction: share of each class (or of the writers) for testing.
      seed: seeds the splits.
      url_base: where the archives are; None means $CHARJAX_CHARS74K_URL, else OFFICIAL_URL.
      from_dir: a folder holding the archives (or the unpacked `English/` tree); no network.
      sha256: (archive name, hex digest) pairs to verify, on top of PINNED_SHA256.
      workers: processes decoding images; 0 picks one per CPU (up to 8) for large subsets.
    """

    subsets: tuple[str, ...] = ("font", "hand", "img_good")
    split: str = "random"
    size: int = 32
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    url_base: str | None = None
    from_dir: str | None = None
    sha256: tuple[tuple[str, str], ...] = ()
    workers: int = 0

    def __post_init__(self):
        PreprocessSpec(size=self.size)  # validates the size with the usual message
        unknown = [s for s in self.subsets if s not in SUBSETS]
        if unknown or not self.subsets or len(set(self.subsets)) != len(self.subsets):
            raise CharjaxError(
                f"Chars74K subsets must be distinct names of {', '.join(SUBSETS)}; "
                f"got {','.join(self.subsets) or 'none'}"
            )
        if self.split not in SPLIT_MODES:
            raise CharjaxError(f"unknown split {self.split!r}; choose {' or '.join(SPLIT_MODES)}")
        if self.split == "writer" and "hand" not in self.subsets:
            raise CharjaxError("--split writer needs the hand subset: only its files name writers")
        check_split_fractions(self.val_fraction, self.test_fraction, test_needed=True)
        if self.from_dir and self.url_base:
            raise CharjaxError("give --from-dir or --url-base, not both")
        for name, digest in self.sha256:
            if name not in ARCHIVE_MB or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
                raise CharjaxError(
                    f"--sha256 {name}={digest}: expected NAME=HEX with NAME one of "
                    f"{', '.join(ARCHIVE_MB)} and 64 hex digits"
                )

    @property
    def ordered(self) -> tuple[str, ...]:
        """The subsets in canonical order, so `hand,font` and `font,hand` are one dataset."""
        return tuple(s for s in SUBSETS if s in self.subsets)

    def key(self) -> dict:
        """What the cache's content depends on (not where the archives came from)."""
        return {
            "version": _VERSION,
            "subsets": list(self.ordered),
            "split": self.split,
            "size": self.size,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
        }


@dataclass
class Chars74kReport:
    """What a run did: archives used, images per subset, what was skipped, the split."""

    path: Path
    up_to_date: bool = False
    archives: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    split_by: dict[str, str] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        if self.up_to_date:
            n = sum(self.counts.values())
            return f"{self.path} is already prepared ({n} images); nothing to do"
        lines = [
            f"archive {n}: {a['size'] / 1e6:.1f} MB, sha256 {a['sha256']} ({a['how']})"
            if "sha256" in a
            else f"archive {n}: {a['how']}"
            for n, a in self.archives.items()
        ]
        lines.append(
            "images  "
            + ", ".join(f"{s} {n} (of {SUBSETS[s].count})" for s, n in self.counts.items())
        )
        if self.skipped:
            lines.append("skipped " + ", ".join(f"{n} {r}" for r, n in self.skipped.items()))
        lines.append("split   " + "; ".join(f"{s} {how}" for s, how in self.split_by.items()))
        lines.append(
            f"wrote {sum(self.counts.values())} images ("
            + " | ".join(f"{s} {self.split_counts.get(s, 0)}" for s in SPLITS)
            + f") to {self.path} in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _prepared_meta(path: Path, options: Chars74kOptions) -> dict | None:
    """The meta of a complete cache at `path` made with these options, else None."""
    if not is_cache(path):
        return None
    meta = json.loads((path / "meta.json").read_text())
    return meta if meta.get("chars74k") == options.key() else None


def archive_url(name: str, url_base: str | None = None) -> str:
    base = url_base or os.environ.get(URL_ENV) or OFFICIAL_URL
    return base.rstrip("/") + "/" + name


# --- finding the archives ---------------------------------------------------------------------


def _hint(name: str) -> str:
    return (
        f"; download {name} by hand (see {OFFICIAL_URL}) and run with --from-dir DIR, "
        f"or point --url-base or ${URL_ENV} at a mirror"
    )


def _locate(
    opts: Chars74kOptions,
    download_dir: Path | None,
    progress: bool,
    confirm: Callable[[str], object] | None,
    report: Chars74kReport,
) -> dict[str, tuple[Path, str, bool]]:
    """Archive name -> (archive file or unpacked root, id for staging, downloaded by us)."""
    names = list(dict.fromkeys(SUBSETS[s].archive for s in opts.ordered))
    expected = {**PINNED_SHA256, **dict(opts.sha256)}
    found = {}
    if opts.from_dir:
        root = Path(opts.from_dir)
        if not root.is_dir():
            raise CharjaxError(f"--from-dir {root} is not a folder")
        for name in names:
            folders = [SUBSETS[s].folder for s in opts.ordered if SUBSETS[s].archive == name]
            if (root / name).is_file():
                size, digest = verify(root / name, sha256=expected.get(name))
                found[name] = (root / name, digest, False)
                report.archives[name] = {"size": size, "sha256": digest, "how": f"in {root}"}
            elif all((root / f).is_dir() for f in folders):
                found[name] = (root, f"unpacked:{root.resolve()}", False)
                report.archives[name] = {"how": f"unpacked in {root}"}
            else:
                raise CharjaxError(
                    f"--from-dir {root} has neither {name} nor the unpacked {folders[0]}/; "
                    f"get it from {archive_url(name, opts.url_base)}"
                )
        return found
    if download_dir is None:
        raise ValueError("download_dir is required unless options.from_dir is set")
    todo = [n for n in names if not (download_dir / n).exists()]
    if todo and confirm is not None:
        sizes = ", ".join(f"{n} (~{ARCHIVE_MB[n]} MB)" for n in todo)
        confirm(f"Download {sizes} from {archive_url('', opts.url_base)} into {download_dir}?")
    for name in names:
        got = download(
            archive_url(name, opts.url_base),
            download_dir / name,
            sha256=expected.get(name),
            progress=progress,
            hint=_hint(name),
        )
        how = "resumed" if got.resumed else "downloaded" if got.attempts else "already there"
        found[name] = (got.path, got.sha256, True)
        report.archives[name] = {"size": got.size, "sha256": got.sha256, "how": how}
    return found


# --- splitting and assembling -----------------------------------------------------------------


def _split(subset: Subset, data: dict, opts: Chars74kOptions) -> tuple[np.ndarray, str]:
    """Split index per example (0 train, 1 val, 2 test) and a phrase saying how."""
    if opts.split == "writer" and subset.groups == "writer":
        # The hand files are imgCCC-WWW.png: each of the 55 volunteers drew every character
        # once, so WWW, the sample number, is the writer. Whole writers go to one split.
        writers = np.random.default_rng(opts.seed).permutation(np.unique(data["nums"]))
        n_test = max(1, round(opts.test_fraction * len(writers)))
        n_val = round(opts.val_fraction * len(writers))
        if n_test + n_val >= len(writers):
            raise CharjaxError(f"hand has {len(writers)} writers, too few to split by writer")
        of_writer = dict.fromkeys(writers[:n_test].tolist(), 2)
        of_writer.update(dict.fromkeys(writers[n_test : n_test + n_val].tolist(), 1))
        splits = np.asarray([of_writer.get(w, 0) for w in data["nums"].tolist()], np.uint8)
        n_train = len(writers) - n_test - n_val
        return splits, f"by writer ({n_train}/{n_val}/{n_test} writers)"
    # Each subset has its own stream of random numbers, so adding a subset moves no other.
    seed = opts.seed * len(SUBSETS) + list(SUBSETS).index(subset.name)
    splits = split_per_class(data["labels"], opts.val_fraction, opts.test_fraction, seed)
    val, test = round(100 * opts.val_fraction), round(100 * opts.test_fraction)
    return splits, f"random per class ({100 - val - test}/{val}/{test}%)"


def _group_names(subset: Subset, nums: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Group index per example within the subset, and the group names."""
    if not subset.groups:  # photos: nothing known about where each came from
        return np.zeros(len(nums), np.int32), [subset.name]
    values, inverse = np.unique(nums, return_inverse=True)
    width = 3 if subset.groups == "writer" else 5
    return inverse.astype(np.int32), [
        f"{subset.name} {subset.groups} {v:0{width}d}" for v in values
    ]


def _read_archives(found: dict, opts, spec, stage_dir: Path, progress: bool) -> dict[str, dict]:
    """Each wanted subset's images, labels and skip counts: from its stage file when an earlier
    run left one for the same archive and preprocessing, else read from the archive (and
    staged, so an interrupted preparation resumes there)."""
    data: dict[str, dict] = {}
    for name, (source, archive_id, ours) in found.items():
        wanted = [s for s in opts.ordered if SUBSETS[s].archive == name]
        stages = {s: stage_file(stage_dir, s, archive_id, spec) for s in wanted}
        staged = {s: load_stage(p) for s, p in stages.items() if p.exists()}
        data.update({s: d for s, d in staged.items() if d is not None})
        todo = [SUBSETS[s] for s in wanted if s not in data]
        if not todo:
            continue
        try:
            read = chars74k_archive.read_subsets(source, todo, spec, opts.workers, progress)
        except CorruptArchive as e:
            if ours:  # a download of ours that cannot be read: fetch it afresh next time
                source.unlink(missing_ok=True)
                raise CharjaxError(f"{e}; deleted it, run again to download it afresh") from None
            raise CharjaxError(f"{e}; get a fresh copy of {name}") from None
        for s, d in read.items():
            save_stage(stages[s], d)
        data.update(read)
    return data


def prepare_chars74k(
    out: str | os.PathLike,
    options: Chars74kOptions | None = None,
    *,
    download_dir: str | os.PathLike | None = None,
    progress: bool = True,
    confirm: Callable[[str], object] | None = None,
    **kw,
) -> Chars74kReport:
    """Prepares Chars74K subsets into a cache at `out`, or says it already is.

    Args:
      out: the cache directory (replaced atomically when options differ).
      options: a Chars74kOptions; keyword arguments override its fields.
      download_dir: where archives are downloaded to and kept (unused with from_dir).
      progress: show progress bars on stderr.
      confirm: called with a question before anything is downloaded; raise to stop.

    Returns:
      A Chars74kReport (`up_to_date` when nothing had to be done). Raises CharjaxError with
      one clear line on any failure, leaving no cache that reads as complete.
    """
    opts = dataclasses.replace(options or Chars74kOptions(), **kw)
    out = Path(out)
    report = Chars74kReport(out)
    meta = _prepared_meta(out, opts)
    if meta is not None:
        report.up_to_date = True
        report.counts = {s: v["count"] for s, v in meta["subsets"].items()}
        return report
    start = time.perf_counter()
    spec = PreprocessSpec(size=opts.size)
    dl_dir = Path(download_dir) if download_dir is not None else None
    found = _locate(opts, dl_dir, progress, confirm, report)
    stage_dir = out.with_name(f".{out.name}.parts")
    data = _read_archives(found, opts, spec, stage_dir, progress)

    images, labels, groups, splits, group_names = [], [], [], [], []
    meta_subsets = {}
    for s in opts.ordered:
        d, subset = data[s], SUBSETS[s]
        local, names = _group_names(subset, d["nums"])
        split, how = _split(subset, d, opts)
        images.append(d["images"])
        labels.append(d["labels"])
        groups.append(local + len(group_names))
        splits.append(split)
        group_names += names
        report.counts[s] = len(d["labels"])
        report.split_by[s] = how
        for reason, n in d["skipped"].items():
            report.skipped[f"{s}: {reason}"] = report.skipped.get(f"{s}: {reason}", 0) + n
        meta_subsets[s] = {
            "first": sum(report.counts.values()) - len(d["labels"]),
            "count": len(d["labels"]),
        }
    all_splits = np.concatenate(splits)
    report.split_counts = {name: int((all_splits == i).sum()) for i, name in enumerate(SPLITS)}
    meta = {
        "source": "chars74k",
        "chars74k": opts.key(),
        "preprocess": spec.to_dict(),
        "group_names": group_names,
        "subsets": meta_subsets,  # examples are in subset order: [first, first + count)
        "split_by": "; ".join(f"{s} {how}" for s, how in report.split_by.items()),
        "seed": opts.seed,
        "archives": report.archives,
        "skipped": report.skipped,
    }
    write_cache(
        out,
        np.concatenate(images),
        np.concatenate(labels),
        np.concatenate(groups),
        all_splits,
        meta,
    )
    shutil.rmtree(stage_dir, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    return report
