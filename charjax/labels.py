"""The 62 character classes, in Chars74K order: `0-9`, then `A-Z`, then `a-z`.

Chars74K names class folders `Sample001`..`Sample062` in this same order, so class index
`i` is folder `Sample{i+1:03d}`.

Case-insensitive metrics fold every upper-case letter onto its lower-case letter (26 pairs:
A/a, B/b, ... Z/z), giving 36 folded classes. Digits are never folded with letters (0 and O
stay apart) because that is a shape confusion, not a case one. Case-insensitive accuracy is
the fair measure for letters whose two cases are the same shape at a different size (c, o, s,
u, v, w, x, z, ...): once an image is cropped to its ink, the size difference is gone.

A character set (`parse_charset`) restricts the answer to classes a user knows are possible (a
digit field, a licence plate, a code of capitals); `restrict` renormalises probabilities over
them, so the figure is what the model would say had it been trained on those classes only.
"""

import re
import string

import numpy as np

from charjax.errors import CharjaxError

CLASSES: str = string.digits + string.ascii_uppercase + string.ascii_lowercase
NUM_CLASSES: int = len(CLASSES)  # 62
_INDEX = {c: i for i, c in enumerate(CLASSES)}

# Letters whose upper and lower case differ only in size (after cropping to the ink, the
# same picture), plus the digit/letter look-alikes. The GUI groups these so a user sees why
# both appear in the top-5.
LOOKALIKE_GROUPS: tuple[str, ...] = (
    "0Oo",
    "1Il",
    "Cc",
    "Kk",
    "Pp",
    "Ss5",
    "Uu",
    "Vv",
    "Ww",
    "Xx",
    "Yy",
    "Zz2",
    "Jj",
    "Mm",
)


def char_to_index(char: str) -> int:
    """Returns the class index of a single character, or raises ValueError."""
    try:
        return _INDEX[char]
    except KeyError:
        raise ValueError(f"{char!r} is not one of the 62 classes (0-9, A-Z, a-z)") from None


def sample_dir_name(index: int) -> str:
    """Chars74K folder name for a class index: 0 -> 'Sample001'."""
    return f"Sample{int(index) + 1:03d}"


def fold_case(indices):
    """Maps class indices to case-folded indices (A-Z -> a-z); works on ints and arrays."""
    arr = np.asarray(indices)
    folded = np.where((arr >= 10) & (arr < 36), arr + 26, arr)
    return folded if folded.ndim else int(folded)


# A lookup table form of `fold_case`, handy inside jitted code: FOLD_TABLE[label].
FOLD_TABLE = np.asarray(fold_case(np.arange(NUM_CLASSES)), dtype=np.int32)


# Letters whose two cases are one shape at two sizes, for which a `:nocase` part of `--data`
# teaches the letter but not its case (`charjax.losses.Classification`). A handwriting font's
# "c" and "C" are often the same drawing, so its labels say which case the font's author filed
# it under, not what a reader could tell. The shape-only loss was measured on these seven
# (MODEL_CARD.md); u, k, p and y differ in form often enough in fonts that their labels teach.
SAME_SHAPE_LETTERS = "cosvwxz"


def case_partners() -> np.ndarray:
    """int32 [62]: each same-shape letter's other case; every other class maps to itself."""
    table = np.arange(NUM_CLASSES, dtype=np.int32)
    for lower in SAME_SHAPE_LETTERS:
        table[_INDEX[lower]], table[_INDEX[lower.upper()]] = _INDEX[lower.upper()], _INDEX[lower]
    return table


def lookalike_group(char: str) -> str | None:
    """The look-alike group containing `char`, if any (for flagging in displays)."""
    for group in LOOKALIKE_GROUPS:
        if char in group:
            return group
    return None


# The named character sets; anything else is read as an explicit set like "0-9A-F".
CHARSETS: dict[str, str] = {
    "digits": string.digits,
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "letters": string.ascii_uppercase + string.ascii_lowercase,
    "alnum": CLASSES,
}
# What a user may give where a character set is asked for, as help texts say it.
CHARSET_NAMES = f"{', '.join(CHARSETS)} or characters like 0-9A-F"
# Ranges stay inside one of these runs: "A-z" would otherwise sweep in [\]^_` by code point.
_RUNS = (string.digits, string.ascii_uppercase, string.ascii_lowercase)


def parse_charset(spec: str) -> tuple[int, ...]:
    """The sorted class indices of a character set.

    Args:
      spec: a name from `CHARSETS` (digits, upper, lower, letters, alnum) or an explicit set of
        characters and ranges such as "0-9A-F" or "ABC123" (a name wins: "upper" is the 26
        capitals, not u, p, e and r).

    Raises:
      CharjaxError: for a character outside the 62 classes, a backwards or mixed range, or an
        empty set.
    """
    spec = spec.strip()
    if spec in CHARSETS:
        return tuple(sorted(_INDEX[c] for c in CHARSETS[spec]))
    names = ", ".join(CHARSETS)
    if not spec:
        raise CharjaxError(f"empty character set: give one of {names} or characters like 0-9A-F")
    chars: set[str] = set()
    for m in re.finditer(r"(.)-(.)|(.)", spec):
        first, last, single = m.groups()
        if single is not None:
            if single not in _INDEX:
                raise CharjaxError(
                    f"character set {spec!r}: {single!r} is not one of the 62 classes "
                    f"(0-9, A-Z, a-z); named sets are {names}"
                )
            chars.add(single)
            continue
        run = next((r for r in _RUNS if first in r and last in r), None)
        if run is None or run.index(first) > run.index(last):
            raise CharjaxError(
                f"character set {spec!r}: range {first}-{last} must run forward within 0-9, "
                "A-Z or a-z"
            )
        chars.update(run[run.index(first) : run.index(last) + 1])
    return tuple(sorted(_INDEX[c] for c in chars))


def restrict(probs: np.ndarray, allowed) -> np.ndarray:
    """Probabilities renormalised over the `allowed` class indices, zero elsewhere.

    Args:
      probs: float [..., 62], rows summing to 1 (a softmax).
      allowed: class indices, e.g. from `parse_charset`.

    Returns:
      float32 [..., 62]. A row that gave the allowed classes no mass at all (float32
      underflow) becomes uniform over them rather than 0/0.
    """
    probs = np.asarray(probs, np.float32)
    mask = np.zeros(NUM_CLASSES, bool)
    mask[list(allowed)] = True
    kept = np.where(mask, probs, 0.0)
    total = kept.sum(axis=-1, keepdims=True)
    uniform = np.broadcast_to(mask / mask.sum(), kept.shape)
    return np.where(total > 0, kept / np.where(total > 0, total, 1.0), uniform).astype(np.float32)
