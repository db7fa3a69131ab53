"""`charjax predict`: top-k characters for image files."""

import json

import click

from charjax.labels import parse_charset
from charjax.predict import load


@click.command()
@click.option(
    "--checkpoint",
    default=None,
    help="A run directory or checkpoint directory [default: the bundled model].",
)
@click.option("--top-k", default=5, show_default=True, type=int, help="Guesses per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per image.")
@click.option(
    "--charset",
    default=None,
    help="Answer only from digits, upper, lower, letters, alnum or characters like 0-9A-F "
    "(probabilities renormalised over them).",
)
@click.argument("images", nargs=-1, required=True, type=click.Path())
def predict(checkpoint, top_k, as_json, charset, images):
    """Recognise the character in each IMAGE.

    \b
    Example:
      charjax predict letter.png                 # with the bundled model
      charjax predict --checkpoint runs/resnet letter.png photo.jpg
      charjax predict --charset 0-9A-F digit.png   # a hex code: only 16 answers possible
    """
    if charset is not None:
        parse_charset(charset)  # a typo fails before the model loads
    predictor = load(checkpoint)
    preds = predictor.predict(list(images), top_k=top_k, charset=charset)
    for path, pred in zip(images, preds, strict=True):
        if as_json:
            click.echo(json.dumps({"file": path, **pred.as_dict()}))
        else:
            guesses = "  ".join(
                f"{c} {p:6.1%}" for c, p in zip(pred.chars, pred.probs, strict=True)
            )
            click.echo(f"{path}: {guesses}")
