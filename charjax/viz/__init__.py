"""Pictures: everything charjax draws, and the one place its grids, labels and PNGs are made.

- `grid`: the pieces (one grid paster, one label font, enlargement, sections, `save_png`).
- `contact_sheet`: samples of a prepared dataset (`charjax data info --sheet`).
- `activations`: inside a classifier (`charjax show`, `charjax filters`).
- `report`: where a classifier goes wrong (`charjax eval --report`).
- `curves`: training curves from metrics.jsonl (`charjax plot`, matplotlib).
- `glyphs`: a generative run's glyphs on paper (`charjax sample`, `charjax reconstruct`).
- `walk`: the latent-space walk as a video or strip (`charjax walk`).
- `reading`: a reading's glyph boxes, by confidence, and its text over the image
  (`charjax read --show`).
"""
