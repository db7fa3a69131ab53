"""Keep a PySide6 reference-counting bug from aborting the app on Python < 3.12.

PySide6 6.12.0's abi3 wheels, run on Python 3.10 / 3.11, hand back None, True and False from
their C++ wrappers without taking a reference: every `painter.drawLine(...)` or
`widget.update()` drops one reference to None, every `signal.emit(...)` one to True. On
Python 3.12+ those objects are immortal and nothing happens; on 3.11 a drawing session costs
about ten references per mouse move, and after a few thousand strokes Python aborts with
"Fatal Python error: none_dealloc: deallocating None". (Measured: 7,200 simulated mouse moves
took None from 75k references to 12k.)

`protect_singletons` detects the leak with a probe and, only where it exists, gives the three
singletons a practically infinite count, which is what Python 3.12 does for them anyway. They
are static objects that are never freed, so the extra count cannot leak memory.
"""

import ctypes
import sys

from PySide6.QtCore import QPointF

# 2**40 lost references is ~30 years of non-stop drawing at 1,000 leaks per second.
_HEADROOM = 1 << 40
_PROBE_CALLS = 1000


def binding_leaks_none() -> bool:
    """Whether calling a PySide6 method that returns None loses a reference to None."""
    point = QPointF()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        point.setX(0.0)
    # Other threads may touch None meanwhile; a real leak loses one per call.
    return before - sys.getrefcount(None) >= _PROBE_CALLS // 2


def protect_singletons() -> bool:
    """Makes None, True and False immortal if this PySide6 build leaks them.

    Returns:
      True if the workaround was applied (CPython < 3.12 with a leaking PySide6).
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if not binding_leaks_none():
        return False
    for obj in (None, True, False):
        # ob_refcnt is the first field of every CPython object (non-debug builds).
        ctypes.c_ssize_t.from_address(id(obj)).value += _HEADROOM
    return True
