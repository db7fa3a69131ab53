"""Splitting font faces into train / val / test so that test fonts are really unseen.

Faces of one family (Regular, Bold, Italic, ...) share their design, so a test face whose
family is in training measures little. Faces are therefore split by family: a family's split
follows from a hash of its name alone (about 80/10/10), so it is the same on every machine and
does not move when other fonts are installed or removed. With too few families (fewer than 3,
or one split would get none, as with DejaVu's three families) faces are split one by one
instead; with fewer than 3 faces, single renderings are. The plan says which it did.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from charjax.data.cache import SPLITS

_FRACTIONS = (0.8, 0.1, 0.1)


def _first(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _unit_hash(name: str) -> float:
    """A stable number in [0, 1) for a name (Python's hash() is salted per process)."""
    digest = hashlib.sha256(b"charjax-split:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class SplitPlan:
    """Which split each face (or, for "example" plans, each rendering) belongs to.

    Attributes:
      by: "family", "face" or "example".
      face_splits: uint8 [F], index into SPLITS per face; None when split by example.
      families: family name per face.
      names: face name per face.
      note: why the plan is not by family, or "" when it is.
      seed: seeds the per-example split.
    """

    by: str
    face_splits: np.ndarray | None
    families: tuple[str, ...]
    names: tuple[str, ...]
    note: str = ""
    seed: int = 0

    def example_splits(self, groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Split index per example, given each example's face id (`groups`) and label."""
        if self.face_splits is not None:
            return self.face_splits[groups]
        rng = np.random.default_rng(self.seed)
        splits = np.zeros(len(labels), np.uint8)
        # Per class when every class has enough renderings, so every split sees every
        # character; otherwise over all renderings, so val and test are not empty.
        counts = np.bincount(labels)
        pools = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if counts[counts > 0].min() < 3:
            pools = [np.arange(len(labels))]
        for pool in pools:
            idx = rng.permutation(pool)
            n_held = max(1, round(_FRACTIONS[1] * len(idx))) if len(idx) >= 3 else 0
            splits[idx[:n_held]] = 1
            splits[idx[n_held : 2 * n_held]] = 2
        return splits

    def families_in(self, split: str) -> list[str]:
        if self.face_splits is None:
            return sorted(set(self.families))
        k = SPLITS.index(split)
        return sorted({f for f, s in zip(self.families, self.face_splits, strict=True) if s == k})

    def describe(self) -> list[str]:
        """Lines for a summary: how it split, faces and families per split."""
        if self.face_splits is None:
            return [f"split by {self.by}: {self.note}"]
        lines = [f"split by {self.by}" + (f": {self.note}" if self.note else "")]
        for k, split in enumerate(SPLITS):
            fams = self.families_in(split)
            faces = [n for n, s in zip(self.names, self.face_splits, strict=True) if s == k]
            if self.by == "family":
                lines.append(
                    f"  {split}: {len(fams)} families, {len(faces)} faces ({_first(fams)})"
                )
            else:
                lines.append(f"  {split}: {len(faces)} faces ({_first(faces)})")
        return lines


def split_faces(families: Sequence[str], names: Sequence[str], seed: int = 0) -> SplitPlan:
    """Plans the train/val/test split of font faces.

    Args:
      families: family name of each face (`FreeTypeFont.getname()[0]`).
      names: a unique name per face (family and style).
      seed: used only when there are too few faces and single renderings are split.

    Returns:
      A SplitPlan; `by` says whether it split by family, face or example.
    """
    families, names = tuple(families), tuple(names)
    unique = sorted(set(families))
    bucket = {
        f: int(np.searchsorted(np.cumsum(_FRACTIONS), _unit_hash(f), "right")) for f in unique
    }
    by_family = np.array([bucket[f] for f in families], np.uint8)
    if len(unique) >= 3 and len(set(by_family.tolist())) == len(SPLITS):
        return SplitPlan("family", by_family, families, names)

    why = f"only {len(unique)} font families" + (
        "" if len(unique) < 3 else ", and hashing them left a split empty"
    )
    if len(names) < 3:
        note = (
            f"{why} and {len(names)} faces, so single renderings are split; "
            "val/test use the same fonts as training"
        )
        return SplitPlan("example", None, families, names, note, seed)
    # Rank faces by a hash of their name: the first ~10% are test, the next ~10% val.
    n_held = max(1, round(_FRACTIONS[1] * len(names)))
    order = np.argsort([_unit_hash(n) for n in names], kind="stable")
    by_face = np.zeros(len(names), np.uint8)
    by_face[order[:n_held]] = 2
    by_face[order[n_held : 2 * n_held]] = 1
    note = f"{why}, so faces are split instead (val/test faces share families with training)"
    return SplitPlan("face", by_face, families, names, note)
