"""charjax's desktop app (installed as `charjax.apps`)."""

from charjax.apps.pyside_fix import protect_singletons

# Before any widget code runs: PySide6 6.12 on Python < 3.12 would otherwise abort the app
# after a few thousand strokes (see pyside_fix).
protect_singletons()
