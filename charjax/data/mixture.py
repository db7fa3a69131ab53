"""Several datasets trained as one: `--data fonts+chars74k:hand`, with optional weights.

The `--data` value, part by part (`charjax.data.sources` turns each SOURCE into a cache):

    DATA    := PART ( "+" PART )*
    PART    := SOURCE [ ":" WEIGHT ] [ ":nocase" ]     WEIGHT: a positive number, e.g. 0.3 or 2
    SOURCE  := "fonts" | "handwriting"
             | "chars74k" [ ":" SUBSETS [ ":" SPLIT ] ]    SUBSETS: font,hand,img_good,img_bad
             | "folder" ":" IMAGES                          IMAGES: a folder of your images
             | PATH                                         SPLIT: random | writer

    fonts+chars74k:hand                   every train image of both, once
    fonts:0.7+chars74k:hand:0.3           train images drawn 70% from fonts, 30% from hand
    chars74k:hand:writer                  one source: hand, split by writer
    data/mine:1+fonts:3                   a prepared cache directory and the fonts, 1 : 3
    fonts:3+handwriting:1                 the fonts and synthetic handwriting, 3 : 1
    folder:my_samples:0.5+fonts:0.5       your own images (class folders, read on use), 1 : 1
    fonts:0.7+data/hand:0.3:nocase        data/hand teaches c o s v w x z's shape, not case

A trailing ":NUMBER" is always a weight. Weights are given for every part or for none. With
weights, the mixture's train split keeps its natural total size (the sum of the parts' train
splits) and each part fills its share of it by deterministic resampling: every image of the
part repeated the same number of times, plus a seeded random choice for the remainder. The
val and test splits are each part's own, whole and unweighted, so they measure the same
images whatever the weights. A part marked ":nocase" teaches the letters whose cases are one
shape (`charjax.labels.SAME_SHAPE_LETTERS`) without their case: its images of those letters
count as right for either case in the loss, because a handwriting font's "c" and "C" are
often the same drawing and its labels then teach a case no reader could see. The mixture
records which groups are such (meta "nocase_groups") and `Cache.arrays` hands the flag to the
batches as "nocase". Parts must share one preprocessing spec (the one a checkpoint
records), so a mixture is a plain cache on disk and everything downstream is unchanged.
"""

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charjax.data.cache import SPLITS, Cache, is_cache, load_cache, write_cache
from charjax.errors import CharjaxError

KEYWORDS = ("fonts", "chars74k", "handwriting", "folder")
_MIX_VERSION = 1


@dataclass(frozen=True)
class DataPart:
    """One `+`-separated part of a `--data` value.

    Attributes:
      kind: "fonts", "chars74k", "handwriting", "folder" or "path".
      args: chars74k: (SUBSETS,) or (SUBSETS, SPLIT); path, folder: (PATH,); fonts,
        handwriting: ().
      weight: the part's share of the train split, or None.
      text: the part as written, without its weight and ":nocase".
      nocase: the part teaches same-shape letters without their case (module docstring).
    """

    kind: str
    args: tuple[str, ...]
    weight: float | None
    text: str
    nocase: bool = False

    def spec(self) -> str:
        """The part as it is written in `--data`, weight and ":nocase" included."""
        weight = "" if self.weight is None else f":{self.weight:g}"
        return self.text + weight + ":nocase" * self.nocase


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_data(spec: str) -> list[DataPart]:
    """Parses a `--data` value (see the module docstring) into its parts.

    Raises CharjaxError, naming the part, when a part or weight is malformed.
    """
    parts = []
    for text in spec.split("+"):
        fields = text.split(":")
        nocase = len(fields) > 1 and fields[-1] == "nocase"
        fields = fields[:-1] if nocase else fields
        weight = _number(fields[-1]) if len(fields) > 1 else None
        if weight is not None:
            fields = fields[:-1]
            if weight <= 0:
                raise CharjaxError(f"--data part {text!r}: the weight must be positive")
        if "nocase" in fields[1:]:
            raise CharjaxError(f"--data part {text!r}: ':nocase' goes last, after the weight")
        head, rest = fields[0], fields[1:]
        if not head:
            raise CharjaxError(f"--data {spec!r} has an empty part (two '+' in a row?)")
        if head in ("fonts", "handwriting") and rest:
            raise CharjaxError(f"--data part {text!r}: {head!r} takes no options, only a weight")
        if head == "chars74k" and len(rest) > 2:
            raise CharjaxError(
                f"--data part {text!r}: expected chars74k[:SUBSETS[:SPLIT]][:WEIGHT]"
            )
        if head == "folder" and not "".join(rest):
            raise CharjaxError(f"--data part {text!r}: expected folder:PATH[:WEIGHT]")
        kind = head if head in KEYWORDS else "path"
        args = {"chars74k": tuple(rest), "path": (":".join(fields),), "folder": (":".join(rest),)}
        args = args.get(kind, ())
        parts.append(DataPart(kind, args, weight, ":".join(fields), nocase))
    given = [p.weight is not None for p in parts]
    if len(parts) > 1 and any(given) and not all(given):
        missing = ", ".join(p.text for p in parts if p.weight is None)
        raise CharjaxError(
            f"--data {spec!r}: give a weight to every part or to none (missing: {missing})"
        )
    return parts


def mixture_path(root: Path, parts: Sequence[DataPart], image_size: int) -> Path:
    """Where the mixture of `parts` is kept: a name derived from the parts and weights."""
    # An unmarked part keeps the key it had before ":nocase" existed, so a mixture built then
    # is rebuilt in place (its record differs) instead of left behind under an old name.
    key = json.dumps([[p.text, p.weight] + ["nocase"] * p.nocase for p in parts])
    return root / f"mix-{hashlib.sha256(key.encode()).hexdigest()[:12]}-{image_size}"


def _part_record(part: DataPart, cache: Cache) -> dict:
    """What the mixture depends on: which cache, which build of it, what weight."""
    # meta.json is rewritten by every build (write_cache replaces the directory), so its
    # modification time tells builds apart even within the second `created` resolves.
    stat = (cache.path / "meta.json").stat()
    return {
        "data": part.text,
        "weight": part.weight,
        "nocase": part.nocase,
        "path": str(cache.path.resolve()),
        "build": f"{cache.meta.get('created')} {stat.st_mtime_ns} {stat.st_size}",
    }


def resample(indices: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of `indices`: each repeated count // n times, plus a random count % n of them.

    Evenly repeated rather than drawn with replacement, so oversampling a small part shows
    every image equally often, and undersampling never repeats one.
    """
    whole, rest = divmod(count, len(indices))
    return np.concatenate([np.tile(indices, whole), rng.permutation(indices)[:rest]])


def build_mixture(
    out: Path, parts: Sequence[DataPart], caches: Sequence[Cache], seed: int = 0
) -> Cache:
    """Combines prepared caches into one cache at `out`, or reuses it when still current.

    Args:
      out: the mixture's cache directory (see `mixture_path`).
      parts: the parsed `--data` parts, one per cache, with their weights (all or none).
      caches: the parts' caches, all with the same image size and preprocessing.
      seed: seeds the resampling of the remainders.

    Returns:
      The loaded mixture cache.
    """
    records = [_part_record(p, c) for p, c in zip(parts, caches, strict=True)]
    if is_cache(out):
        existing = load_cache(out)
        old = [{k: r.get(k) for k in records[0]} for r in existing.meta.get("parts", [])]
        if old == records and existing.meta.get("mix") == _MIX_VERSION:
            return existing
    spec = caches[0].meta.get("preprocess")
    for part, cache in zip(parts[1:], caches[1:], strict=True):
        if cache.meta.get("preprocess") != spec:
            raise CharjaxError(
                f"--data parts {parts[0].text!r} and {part.text!r} were preprocessed "
                f"differently ({spec} vs {cache.meta.get('preprocess')}); prepare them with "
                "the same settings to mix them"
            )
    chosen = [{s: c.indices(s) for s in SPLITS} for c in caches]
    weights = [p.weight for p in parts]
    if weights[0] is not None:
        total = sum(len(ch["train"]) for ch in chosen)
        share = np.asarray(weights) / sum(weights)
        for i, (part, ch) in enumerate(zip(parts, chosen, strict=True)):
            if not len(ch["train"]):
                raise CharjaxError(f"--data part {part.text!r} has no train images to weight")
            count = max(1, round(share[i] * total))
            ch["train"] = resample(ch["train"], count, np.random.default_rng([seed, i]))

    images, labels, groups, splits, group_names, nocase_groups = [], [], [], [], [], []
    for part, cache, ch, record in zip(parts, caches, chosen, records, strict=True):
        for k, split in enumerate(SPLITS):
            idx = ch[split]
            images.append(np.asarray(cache.images[idx]))
            labels.append(np.asarray(cache.labels[idx]))
            groups.append(np.asarray(cache.groups[idx]) + len(group_names))
            splits.append(np.full(len(idx), k, np.uint8))
        names = cache.meta.get("group_names") or []
        n_groups = max(len(names), int(np.max(cache.groups, initial=-1)) + 1)
        if part.nocase:  # half-open ranges of the mixture's group ids
            nocase_groups.append([len(group_names), len(group_names) + n_groups])
        group_names += [f"{part.text}: {g}" for g in names] + [
            f"{part.text}: group {g}" for g in range(len(names), n_groups)
        ]
        record.update(source=cache.meta.get("source"), train_images=len(ch["train"]))
    how = "as they are" if weights[0] is None else "train resampled to the weights"
    meta = {
        "source": "mixture",
        "mix": _MIX_VERSION,
        "data": "+".join(p.spec() for p in parts),
        "parts": records,
        "preprocess": spec,
        "group_names": group_names,
        "nocase_groups": nocase_groups,
        "split_by": f"each part's own split; {how}",
        "seed": seed,
    }
    path = write_cache(
        out,
        np.concatenate(images),
        np.concatenate(labels),
        np.concatenate(groups),
        np.concatenate(splits),
        meta,
    )
    return load_cache(path)
