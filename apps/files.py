"""Where the GUI's files come from and go: the model it opens first, and the drawings it saves
as samples in the Chars74K folder layout (which `charjax eval --data folder:DIR` and `charjax
data folder DIR` read back).
"""

import re
from pathlib import Path

from charjax.apps.canvas import Canvas
from charjax.errors import CharjaxError
from charjax.labels import char_to_index, sample_dir_name
from charjax.predict import default_checkpoint


def bundled_model() -> Path | None:
    """The default model shipped with charjax, or None in an installation without one."""
    try:
        return default_checkpoint()
    except CharjaxError:
        return None


def newest_run(runs_dir="runs") -> Path | None:
    """The most recently written run under `runs_dir` that has a checkpoint, if any.

    A run is a directory holding `best/` or `checkpoints/` (what `charjax train` writes).
    """
    root = Path(runs_dir)
    if not root.is_dir():
        return None
    candidates = []
    for run in root.iterdir():
        saved = [run / "best", run / "checkpoints"]
        times = [d.stat().st_mtime for d in saved if d.is_dir()]
        if times:
            candidates.append((max(times), run))
    return max(candidates)[1] if candidates else None


def save_sample(canvas: Canvas, samples_dir, label: str) -> Path:
    """Writes the drawing as `DIR/SampleNNN/imgNNN-KKKKK.png`, the Chars74K folder layout.

    `charjax eval --data folder:DIR` and `charjax data folder DIR` read it back. K is one
    more than the highest number already in the class folder, so nothing is overwritten.

    Returns:
      the path written. Raises ValueError if `label` is not one of the 62 characters.
    """
    index = char_to_index(label)
    folder = Path(samples_dir) / sample_dir_name(index)
    folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"img{index + 1:03d}-(\d+)\.png")
    taken = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    path = folder / f"img{index + 1:03d}-{max(taken, default=0) + 1:05d}.png"
    canvas.save_png(path)
    return path
