"""The 62 character classes, in Chars74K order: `0-9`, then `A-Z`, then `a-z`.

Chars74K names class folders `Sample001`..`Sample062` in this same order, so class index
`i` is folder `Sample{i+1:03d}`.

Case-insensitive metrics fold every upper-case letter onto its lower-case letter (26 pairs:
A/a, B/b, ... Z/z), giving 36 folded classes. Digits are never folded with letters (0 and O
stay apart) because that is a shape confusion, not a case one. Case-insensitive accuracy is
the fair measure for letters whose two cases are the same shape at a different size (c, o, s,
u, v, w, x, z, ...): once an image is cropped to its ink, the size difference is gone.
"""

import string

import numpy as np

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


def lookalike_group(char: str) -> str | None:
    """The look-alike group containing `char`, if any (for flagging in displays)."""
    for group in LOOKALIKE_GROUPS:
        if char in group:
            return group
    return None
