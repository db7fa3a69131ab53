"""Driving charjax-gui's real widgets like a user: dense mouse strokes and waiting on the event
loop. Shared by the test_gui*.py files; the `app` and `window` fixtures are in conftest.py."""

import time

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

# A capital A in canvas pixels: two slanted strokes and a bar.
LETTER_A = [[(110, 340), (200, 60), (290, 340)], [(150, 230), (250, 230)]]


def wait_until(app, condition, timeout=20.0):
    """Runs the event loop until `condition()` holds (a tiny stand-in for pytest-qt's waitUntil)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the GUI")
        app.processEvents()
        time.sleep(0.002)


def interpolate(points, step=8.0):
    """A polyline as the dense point stream a real mouse produces."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        n = max(1, int(np.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n) for t in range(1, n + 1)]
    return [QPoint(round(x), round(y)) for x, y in out]


def draw(canvas, polyline, release=True):
    points = interpolate(polyline)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for p in points[1:]:
        QTest.mouseMove(canvas, p)
    if release:
        QTest.mouseRelease(
            canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1]
        )


def draw_and_wait(app, win, strokes):
    for polyline in strokes:
        before = win.results_shown
        draw(win.canvas, polyline)
        wait_until(app, lambda b=before: win.results_shown > b)
    return win.last_result
