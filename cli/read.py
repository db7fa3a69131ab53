"""`charjax read`: the text of words and lines in image files."""

import json

import click

from charjax.cli.many_files import fail_if_unreadable, report_unreadable
from charjax.cli.options import bundled_checkpoint_option, charset_option
from charjax.errors import CharjaxError
from charjax.read import DEFAULT_ENGINE, ENGINES, make_reader
from charjax.viz.reading import save_reading_picture


@click.command()
@bundled_checkpoint_option()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per image.")
@click.option(
    "--show",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a picture of the boxes and the reading over the image (one IMAGE only).",
)
@charset_option("Read only these characters: {sets}.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=DEFAULT_ENGINE,
    show_default=True,
    help="lines: a line model reads each line whole (CTC); glyphs: the line is cut into "
    "glyphs that the classifier reads, case and look-alikes settled from the line.",
)
@click.option(
    "--lines-model",
    default=None,
    type=click.Path(file_okay=False),
    help="A line model directory (`charjax train-lines`) [default: the bundled one].",
)
@click.argument("images", nargs=-1, required=True, type=click.Path())
def read(checkpoint, as_json, show, charset, engine, lines_model, images):
    """Read the words and lines of text in each IMAGE.

    Spaces come from the gaps between glyphs; lines are joined by newlines. An image with no
    text reads as empty text, with a note on stderr. Files that cannot be read are reported
    on stderr while the others are read, and the exit status is 2.

    \b
    Example:
      charjax read note.png
      charjax read --json --show boxes.png label.jpg
      charjax read --engine glyphs --charset digits meter.png
    """
    if show and len(images) != 1:
        raise CharjaxError("--show draws one reading; give one IMAGE with it")
    reader = make_reader(checkpoint, charset, engine, lines_model)
    failed = 0
    for path in images:
        try:
            reading = reader.read(path)
        except CharjaxError as e:
            report_unreadable(path, e, len(images), as_json)
            failed += 1
            continue
        if as_json:
            click.echo(json.dumps({"file": path, **reading.as_dict()}))
        elif len(images) > 1:
            click.echo(f"{path}: {reading.text}".replace("\n", "\n  "))
        else:
            click.echo(reading.text)
        if reading.note:
            click.echo(f"charjax: {path}: {reading.note}", err=True)
        if show:
            save_reading_picture(path, reading, show)
    fail_if_unreadable(failed, len(images))
