"""`charjax train-lines`: train the line model that `charjax read --engine lines` uses."""

import click

from charjax.data.line_data import LineDataOptions
from charjax.line_train import LineTrainConfig, run_line_training


@click.command("train-lines")
@click.option("--workdir", required=True, type=click.Path(file_okay=False),
              help="Where the model (WORKDIR/model) and metrics.jsonl go.")  # fmt: skip
@click.option("--steps", default=LineTrainConfig.steps, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=LineTrainConfig.batch_size, show_default=True,
              type=click.IntRange(1))  # fmt: skip
@click.option("--lr", default=LineTrainConfig.lr, show_default=True, type=click.FloatRange(0))
@click.option("--lines", default=LineDataOptions.lines, show_default=True,
              type=click.IntRange(10), help="Lines to render for training.")  # fmt: skip
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Line cache directory [default: in the dataset cache].")  # fmt: skip
@click.option("--hand-fonts", multiple=True, type=click.Path(exists=True),
              help="Handwriting or cursive font file or folder to set lines in too "
              "(repeatable; `make hand-fonts` fetches 44 families).")  # fmt: skip
@click.option("--hand-font-share", default=LineDataOptions.hand_font_share, show_default=True,
              type=click.FloatRange(0, 1),
              help="Share of the lines set in --hand-fonts.")  # fmt: skip
@click.option("--print-fonts", multiple=True, type=click.Path(exists=True),
              help="Printed font file or folder to set the printed lines in too, beside the "
              "installed fonts (repeatable; `make print-fonts` fetches 59 families).")  # fmt: skip
@click.option("--distort", default=LineTrainConfig.distort, show_default=True,
              type=click.FloatRange(0, 2),
              help="Width, slant, stroke-weight, resolution and blur augmentation strength "
              "(0: off).")  # fmt: skip
@click.option("--init", default=None, type=click.Path(exists=True, file_okay=False),
              help="A saved line model to start from (fine-tune), e.g. charjax's bundled "
              "one or WORKDIR/model of an earlier run.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def train_lines(workdir, steps, batch_size, lr, lines, cache, hand_fonts, hand_font_share,
                print_fonts, distort, init, seed, no_progress):  # fmt: skip
    """Train a line model: a convolutional network read out with CTC, on lines rendered from
    the train-split fonts, the handwriting synthesis's train writers and any --hand-fonts
    and --print-fonts.

    It reads a whole line at once, so joined script needs no cutting into glyphs and case
    comes from the line. The lines are rendered once into a cache (a few minutes on 2 cores).

    \b
    Example:
      charjax train-lines --workdir runs/lines --steps 8000
      charjax train-lines --workdir runs/lines --hand-fonts build/hand-fonts \
          --print-fonts build/print-fonts
      charjax train-lines --workdir runs/more --init runs/lines/model --steps 2000 --lr 5e-4
      charjax read --engine lines --lines-model runs/lines/model note.png
    """
    config = LineTrainConfig(steps=steps, batch_size=batch_size, lr=lr, distort=distort,
                             seed=seed)  # fmt: skip
    options = LineDataOptions(lines=lines, hand_fonts=hand_fonts, hand_font_share=hand_font_share,
                              print_fonts=print_fonts, seed=seed)  # fmt: skip
    run_line_training(workdir, config, options, cache, init=init, progress=not no_progress,
                      echo=click.echo)  # fmt: skip
