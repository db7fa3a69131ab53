"""`charjax predict`: top-k characters for image files."""

import json

import click

from charjax.cli.many_files import fail_if_unreadable, report_unreadable
from charjax.cli.options import bundled_checkpoint_option, charset_option
from charjax.errors import CharjaxError
from charjax.predict import load
from charjax.preprocess import NO_INK


@click.command()
@bundled_checkpoint_option()
@click.option("--top-k", default=5, show_default=True, type=int, help="Guesses per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per image.")
@charset_option("Answer only from {sets} (probabilities renormalised over them).")
@click.argument("images", nargs=-1, required=True, type=click.Path())
def predict(checkpoint, top_k, as_json, charset, images):
    """Recognise the character in each IMAGE.

    An image with too little ink to read (blank, or a lone dot) is reported as such, not
    guessed at. Files that cannot be read are reported on stderr after the others are
    answered, and the exit status is 2.

    \b
    Example:
      charjax predict letter.png                 # with the bundled model
      charjax predict --checkpoint runs/resnet letter.png photo.jpg
      charjax predict --charset 0-9A-F digit.png   # a hex code: only 16 answers possible
    """
    predictor = load(checkpoint)
    answers = predictor.predict_files(images, top_k=top_k, charset=charset)
    for path, answer in zip(images, answers, strict=True):
        if isinstance(answer, CharjaxError):
            report_unreadable(path, answer, len(images), as_json)
        elif as_json:
            click.echo(json.dumps({"file": path, **answer.as_dict()}))
        elif answer.blank:
            click.echo(f"{path}: {NO_INK}")
        else:
            guesses = "  ".join(
                f"{c} {p:6.1%}" for c, p in zip(answer.chars, answer.probs, strict=True)
            )
            click.echo(f"{path}: {guesses}")
    fail_if_unreadable(sum(isinstance(a, CharjaxError) for a in answers), len(images))
