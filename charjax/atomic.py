"""One atomic write for every file charjax produces.

A reader (another process, a resumed run, a user's viewer) sees either the old file or the whole
new one, never half of it: the content goes to a uniquely named hidden sibling first and is
renamed into place only once complete. The name is unique per writer, so two processes writing
the same path never share a temp file; the last rename wins whole. A failure, Ctrl-C included,
removes the temp file and leaves the old one untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A `temp_sibling` name inside a longer path: `.STEM.tmp-XXXXXXXX` + the suffix.
_TEMP_NAME = re.compile(r"\.([^/]+)\.tmp-[0-9a-f]{8}(\.[^/]*)?(?=/|$)")


def temp_sibling(path: Path) -> Path:
    """A unique hidden name beside `path` that keeps its suffix (ffmpeg, PIL and numpy pick the
    format from it)."""
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def temp_siblings(path: Path) -> list[Path]:
    """The `temp_sibling` names beside `path` that exist: live writers' and killed ones'."""
    return sorted(path.parent.glob(f".{path.stem}.tmp-*{path.suffix}"))


def user_path(text: str) -> str:
    """`text` (a path in an error) with each temp name put back to the name it stands for:
    the user asked for NAME and knows nothing of `.NAME.tmp-XXXXXXXX`."""
    return _TEMP_NAME.sub(r"\1\2", text)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yields a temp path to write; renames it to `path` when the block ends without error.

    The temp path may become a file or a directory. An existing directory at `path` is replaced
    only after the new one is complete (it is moved aside, then removed).

        with atomic_path(out) as tmp:
            image.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = temp_sibling(path.with_name(path.name + ".old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(o):
    # numpy scalars and paths turn up in metrics and metadata; anything else is a bug to see.
    if hasattr(o, "item") and getattr(o, "shape", None) == ():
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(path, obj: Any) -> None:
    """Writes `obj` as indented JSON (numpy scalars and paths allowed)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
