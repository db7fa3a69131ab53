"""Can Qt open a window here? Checked before `QApplication` exists, because Qt cannot be asked.

On X11, Qt loads its `xcb` platform plugin, which links about a dozen small xcb libraries that
a desktop usually has but a minimal or server install often lacks (`libxcb-cursor0` since Qt
6.5, `libxcb-icccm4`, `libxcb-keysyms1`). A missing one makes Qt print "could not load the Qt
platform plugin xcb" and abort the process, which Python cannot catch, and the message does
not say what to install. So `charjax-gui` loads the same libraries first and names the
Debian/Ubuntu packages that provide the missing ones.
"""

import ctypes
import os
import sys

# What Qt 6's xcb plugin (libqxcb.so and libQt6XcbQpa.so.6) links, by soname, with the
# Debian/Ubuntu package that ships it (`ldd` on the plugin lists them).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def loadable(soname: str) -> bool:
    """Whether the dynamic linker finds `soname` the way Qt's plugin would."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(environ=os.environ, platform: str = sys.platform) -> bool:
    """Whether Qt will open windows through its xcb plugin (X11 on Linux)."""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:  # the first of a "wayland;xcb" list is the one Qt tries
        return chosen.split(";")[0].split(":")[0] == "xcb"
    wayland = environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland"
    return platform.startswith("linux") and not wayland


def display_problem(environ=os.environ, platform: str = sys.platform) -> str | None:
    """Why Qt could not open a window here (one line for the user), or None if it can."""
    if not uses_xcb(environ, platform):
        return None
    missing = [soname for soname in XCB_LIBRARIES if not loadable(soname)]
    if missing:
        packages = " ".join(XCB_LIBRARIES[soname] for soname in missing)
        return (
            f"Qt's xcb platform plugin needs system libraries this machine lacks "
            f"({', '.join(missing)}); on Debian/Ubuntu: sudo apt-get install {packages}"
        )
    if not environ.get("DISPLAY"):
        return (
            "no X display to open a window on ($DISPLAY is not set): run it in a desktop "
            "session, over ssh -X, or under xvfb-run"
        )
    return None
