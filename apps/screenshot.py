"""`make screenshot`: the GUI with a hand-drawn letter, rendered offscreen to a PNG.

    python -m charjax.apps.screenshot [--checkpoint RUN] [--out docs/gui.png]
    python -m charjax.apps.screenshot --line --out docs/gui-line.png   # the wide canvas

It needs a trained run (by default the newest under ./runs, e.g. after `make demo`). No
display is needed: Qt's offscreen platform renders the real widgets, and the letter is drawn
through the canvas's own stroke API, so the picture shows what a user's pen would produce.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

# Before Qt starts: render without a display unless the caller chose a platform.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from charjax.apps.gui import MainWindow, newest_run  # noqa: E402
from charjax.apps.line import LineWindow  # noqa: E402
from charjax.atomic import atomic_path  # noqa: E402


def _arc(cx, cy, r, start_deg, end_deg, n=24):
    """Points on a circle (degrees counter-clockwise, y pointing down as on screen)."""
    angles = [math.radians(start_deg + (end_deg - start_deg) * i / n) for i in range(n + 1)]
    return [(cx + r * math.cos(a), cy - r * math.sin(a)) for a in angles]


# An "S": two arcs. S, s and 5 form a look-alike group, so the screenshot shows the grouping.
LETTER_S = [_arc(200, 138, 72, 20, 270) + _arc(200, 280, 72, 90, -160)]


# "Hello 42" in the wide canvas's pixels (capitals 60-240, x-height 150-240).
LINE_HELLO_42 = [
    [(60, 60), (60, 240)], [(150, 60), (150, 240)], [(60, 150), (150, 150)],  # H
    [(172, 195), (258, 195)] + _arc(215, 195, 43, 0, 315),  # e
    [(300, 55), (300, 240)], [(350, 55), (350, 240)],  # l l
    _arc(430, 195, 44, 90, 450),  # o
    [(620, 60), (570, 180), (655, 180)], [(630, 110), (630, 240)],  # 4
    _arc(725, 110, 45, 160, -30) + [(680, 240), (770, 240)],  # 2
]  # fmt: skip


def _wait(app, condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.005)
    return True


def render(checkpoint, out: Path, strokes=LETTER_S, line=False) -> Path:
    """Opens the window (or with `line`, the wide canvas) on `checkpoint`, draws `strokes`,
    waits for the answer and saves a PNG."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = LineWindow(checkpoint) if line else MainWindow(checkpoint=checkpoint)
    window.show()
    failed = []
    window.service.failed.connect(lambda message, _kept: failed.append(message))
    try:
        if not _wait(app, lambda: window.service.is_ready or failed, timeout=300) or failed:
            raise SystemExit(f"screenshot: cannot load {checkpoint}: {''.join(failed)}")
        if not line:
            window.width_slider.setValue(22)  # also sets the canvas pen
        for stroke in strokes:
            window.canvas.begin_stroke(QPointF(*stroke[0]))
            for point in stroke[1:]:
                window.canvas.extend_stroke(QPointF(*point))
            window.canvas.end_stroke()
        _wait(app, lambda: window.results_shown > 0 and window.service.idle, timeout=60)
        _wait(app, lambda: False, timeout=0.2)  # let the last repaint land
        with atomic_path(out) as tmp:
            if not window.grab().save(str(tmp), "PNG"):
                raise SystemExit(f"screenshot: could not write {out}")
        return out
    finally:
        window.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", metavar="RUN", help="default: newest run under ./runs")
    parser.add_argument("--out", default="docs/gui.png", help="[default: %(default)s]")
    parser.add_argument("--line", action="store_true", help="the wide canvas, with a word")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or newest_run("runs")
    if checkpoint is None:
        raise SystemExit(
            "screenshot: needs a trained run under ./runs; run `make demo` first or pass "
            "--checkpoint RUN"
        )
    strokes = LINE_HELLO_42 if args.line else LETTER_S
    print(render(checkpoint, Path(args.out), strokes, line=args.line))


if __name__ == "__main__":
    main()
