"""Developer tools the Makefile runs from a source checkout; not part of the installed package.

    make pretrained    # runs tools.drawn_set, then tools.bundle

They may import dev-only packages (hershey-fonts) and the Qt app; charjax never imports them.
Run them from the repository root: `python -m tools.drawn_set --out DIR`,
`python -m tools.bundle --run RUN ...` (see MODEL_CARD.md).
"""
