"""`charjax export`: a trained classifier as an ONNX model for onnxruntime."""

from pathlib import Path

import click

from charjax.export import INPUT_DTYPES, ExportConfig, export_onnx
from charjax.predict import PRETRAINED


@click.command()
@click.option(
    "--checkpoint",
    default=PRETRAINED,
    show_default=True,
    help="A run directory, a checkpoint directory, or 'pretrained' (the bundled model).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The .onnx file to write; a .json description of its input goes beside it.",
)
@click.option(
    "--input",
    "input_dtype",
    type=click.Choice(INPUT_DTYPES),
    default="uint8",
    show_default=True,
    help="uint8: preprocessed pixels 0..255; float32: the same divided by 255.",
)
def export(checkpoint, out, input_dtype):
    """Write a classifier as ONNX: images [N, S, S] in, probabilities [N, 62] out.

    Batch norm is folded in and the batch size is free. The class list and the
    preprocessing to apply first are in the model's metadata and in OUT.json.

    \b
    Example:
      charjax export --out charjax.onnx                       # the bundled model
      charjax export --checkpoint runs/resnet --out resnet.onnx
    """
    result = export_onnx(ExportConfig(checkpoint, out, input_dtype))
    shape = "x".join(str(d) for d in result.input_shape)
    click.echo(
        f"wrote {result.model_path} ({result.arch}, {result.size_bytes / 1e6:.1f} MB, "
        f"input {input_dtype} {shape}) and {result.description_path}"
    )
