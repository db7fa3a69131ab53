"""charjax's desktop app (installed as `charjax.apps`)."""
