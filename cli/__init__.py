"""charjax's command line (installed as `charjax.cli`). Commands only parse and delegate."""
