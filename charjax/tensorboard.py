"""TensorBoard event files for a training run, without TensorFlow.

    charjax train --arch resnet-small --workdir runs/resnet --tensorboard
    tensorboard --logdir runs          # (pip install tensorboard) compare every run

`fit` hands the writer the same records it appends to metrics.jsonl, so TensorBoard and
`charjax plot` show the same numbers: train records become scalars under "train/", eval
records under their split ("val/loss", "val/accuracy", ...). Every `histogram_every` steps it
also writes a histogram of every parameter array, as the old TF1 project did, to watch
weights grow, die or saturate.

The files are written by tensorboardX (the optional `tensorboard` extra), a small pure-Python
writer of the event-file format; TensorBoard itself is only needed to look at them.
"""

from pathlib import Path
from typing import Any

import jax
import numpy as np

from charjax.errors import CharjaxError

# Bookkeeping fields of a metrics record, not measurements: never written as scalars.
_NOT_SCALARS = frozenset({"kind", "split", "step", "n"})


def _param_arrays(params, prefix: str = "params") -> list[tuple[str, np.ndarray]]:
    """(tag, numpy array) per parameter, e.g. ("params/Conv_0/kernel", ...)."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        # Params are replicated over the mesh: one addressable copy is the whole array, and
        # reading it works on every process of a multi-host run (np.asarray would not).
        value = leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
        out.append(("/".join([prefix, *names]), np.asarray(value)))
    return out


class TensorBoardWriter:
    """Writes metrics records and parameter histograms as TensorBoard event files.

    Use it from process 0 only (as `fit` does); it is a context manager.
    """

    def __init__(self, logdir):
        """Opens (or appends to, when a run is resumed) event files in `logdir`.

        Raises:
          CharjaxError: when tensorboardX is not installed, saying how to install it.
        """
        # tensorboardX is an optional extra: imported only when --tensorboard asks for it.
        try:
            from tensorboardX import SummaryWriter  # noqa: PLC0415
        except ImportError:
            raise CharjaxError(
                "--tensorboard needs tensorboardX: pip install 'charjax[tensorboard]'"
            ) from None
        self.logdir = Path(logdir)
        self._writer = SummaryWriter(logdir=str(self.logdir), flush_secs=10)

    def write(self, record: dict[str, Any]) -> None:
        """Writes one metrics.jsonl record's numbers as scalars at its step.

        Args:
          record: {"kind": "train" | "eval", "step": int, "split": str (eval), name: number, ...}.
        """
        group = "train" if record.get("kind") == "train" else record.get("split", "eval")
        step = int(record["step"])
        for name, value in record.items():
            if name in _NOT_SCALARS or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and np.isfinite(value):
                self._writer.add_scalar(f"{group}/{name}", float(value), step)

    def histograms(self, step: int, params) -> None:
        """Writes a histogram of every parameter array in the `params` pytree at `step`."""
        for tag, values in _param_arrays(params):
            self._writer.add_histogram(tag, values.astype(np.float32), int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "TensorBoardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
