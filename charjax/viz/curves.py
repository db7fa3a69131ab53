"""Training curves from metrics.jsonl: loss, accuracy and learning rate, several runs overlaid.

    charjax plot runs/resnet runs/cnn --out curves.png

Every run's `fit` appends JSON lines to WORKDIR/metrics.jsonl: {"kind": "train", "step",
"epoch", "loss", "accuracy", "lr", ...} every `log_every` steps and {"kind": "eval", "split":
"val", "loss", "accuracy", "accuracy_ci", ...} at each evaluation. `read_metrics` parses them
(also from a run that was interrupted and resumed: the resumed lines replace the ones written
after its checkpoint), `plot_runs` draws them.

Drawn with matplotlib (the optional `plot` extra), not Pillow: curves need what a plotting
library does well (axis scaling and ticks, a log scale for the loss, legends), while the
image grids of the rest of `charjax.viz` are simpler and exact in Pillow.
"""

import json
from pathlib import Path

import numpy as np

from charjax.atomic import atomic_path
from charjax.errors import CharjaxError

FIGSIZE, DPI = (15.0, 4.6), 100  # the PNG is FIGSIZE * DPI pixels: 1500 x 460
X_AXES = ("step", "epoch")
_INSTALL = "pip install 'charjax[plot]'"


def metrics_path(run) -> Path:
    """WORKDIR/metrics.jsonl for a run directory; a .jsonl file is taken as it is."""
    run = Path(run)
    path = run if run.suffix == ".jsonl" else run / "metrics.jsonl"
    if not path.is_file():
        raise CharjaxError(f"no metrics at {path}; pass a run directory from `charjax train`")
    return path


def read_metrics(run) -> dict[str, list[dict]]:
    """The records of one run, split by kind and ordered by step.

    Args:
      run: a run directory or a metrics.jsonl file.

    Returns:
      {"train": [record, ...], "eval": [record, ...]}. When a step number goes back (the run
      was resumed from an earlier checkpoint), records at or after it are replaced by the new
      ones, so each curve is the history the final model actually has. A line cut off by a
      crash is skipped.
    """
    path = metrics_path(run)
    out: dict[str, list[dict]] = {"train": [], "eval": []}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind not in out or "step" not in record:
            continue
        records = out[kind]
        while records and records[-1]["step"] >= record["step"]:
            records.pop()
        records.append(record)
    if not out["train"] and not out["eval"]:
        raise CharjaxError(f"{path} holds no training metrics yet")
    return out


def _series(records: list[dict], x: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r[x], r[key]) for r in records if isinstance(r.get(key), int | float)]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    xs, ys = np.asarray(pairs, np.float64).T
    return xs, ys


def _smooth(ys: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average, debiased so the start is not pulled to 0."""
    out, avg = np.empty_like(ys), 0.0
    for i, y in enumerate(ys):
        avg = weight * avg + (1 - weight) * y
        out[i] = avg / (1 - weight ** (i + 1))
    return out


def _matplotlib():
    """(Figure, Line2D, ticker) from matplotlib, or a CharjaxError saying how to install it."""
    # matplotlib is an optional extra: import it only when a plot is asked for, and say how
    # to get it. The Figure API (no pyplot) needs no GUI backend and keeps no global state.
    try:
        from matplotlib import ticker  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.lines import Line2D  # noqa: PLC0415
    except ImportError:
        raise CharjaxError(f"charjax plot needs matplotlib: {_INSTALL}") from None
    return Figure, Line2D, ticker


def plot_runs(runs, out, x: str = "step", smooth: float = 0.6) -> Path:
    """Draws loss, accuracy and learning rate of one or more runs into one PNG.

    Args:
      runs: run directories (or metrics.jsonl files); each gets one colour.
      out: the PNG to write (FIGSIZE * DPI pixels).
      x: "step" or "epoch" (epochs compare runs with different batch sizes).
      smooth: EMA weight for the noisy train curves (0: raw); the raw curve stays faint behind.

    Returns:
      The path written.
    """
    if x not in X_AXES:
        raise CharjaxError(f"unknown x axis {x!r}; choose one of {', '.join(X_AXES)}")
    if not 0 <= smooth < 1:
        raise CharjaxError(f"smoothing must be in [0, 1), got {smooth}")
    runs = [str(r) for r in runs]
    if not runs:
        raise CharjaxError("no runs given; pass one or more run directories")
    histories = [read_metrics(r) for r in runs]  # read all first: fail before drawing
    names = [Path(r).name if Path(r).suffix != ".jsonl" else Path(r).parent.name for r in runs]
    if len(set(names)) < len(names):  # two runs called "tiny" in different folders
        names = runs

    Figure, Line2D, ticker = _matplotlib()
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for history, color in zip(histories, colors, strict=True):
        train, evals = history["train"], history["eval"]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_lr, "lr")):
            xs, ys = _series(train, x, key)
            if key != "lr" and smooth and len(ys) > 5:  # the lr is exact: never smoothed
                ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
                ys = _smooth(ys, smooth)
            ax.plot(xs, ys, color=color, linewidth=1.4)
        for ax, key, style in (
            (ax_loss, "loss", "o-"),
            (ax_acc, "accuracy", "o-"),
            (ax_acc, "accuracy_ci", "o:"),
        ):
            xs, ys = _series(evals, x, key)
            ax.plot(xs, ys, style, color=color, markersize=3.5, linewidth=1.4)

    _label_axes(ax_loss, ax_acc, ax_lr, x, ticker)
    # One legend for all panels: colours are runs, line styles are what was measured.
    handles = [
        Line2D([], [], color=c, linewidth=2.5, label=n) for n, c in zip(names, colors, strict=True)
    ]
    handles += [
        Line2D([], [], color="grey", linewidth=1.4, label="train (smoothed)"),
        Line2D([], [], color="grey", marker="o", markersize=3.5, label="val"),
        Line2D([], [], color="grey", linestyle=":", marker="o", markersize=3.5,
               label="val, ignoring case"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=9)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return out


def _label_axes(ax_loss, ax_acc, ax_lr, x: str, ticker) -> None:
    """Titles, grids and scales of the three panels (the loss on a log scale)."""
    for ax, title in (
        (ax_loss, "loss (log scale)"),
        (ax_acc, "accuracy"),
        (ax_lr, "learning rate"),
    ):
        ax.set_title(title, loc="left", fontsize=11)
        ax.set_xlabel(x)
        ax.grid(True, which="both", alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
    if ax_loss.has_data():
        ax_loss.set_yscale("log")
        # Label 1-2-5 steps: a loss going from 4 to 0.3 spans barely one decade.
        ax_loss.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax_loss.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax_loss.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax_acc.set_ylim(0, 1.02)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
