"""`charjax eval`: accuracy of a checkpoint on a dataset split or an image folder."""

import json

import click

from charjax.cli.options import bundled_checkpoint_option, charset_option
from charjax.data.cache import SPLITS
from charjax.evaluate import describe, evaluate_checkpoint


@click.command(name="eval")
@bundled_checkpoint_option("; give it --data, as its training data is not on this machine")
@click.option(
    "--data",
    default=None,
    help="Dataset directory, 'fonts', or folder:PATH (an image folder with "
    "SampleNNN class subfolders or a manifest.csv) [default: the run's data].",
)
@click.option(
    "--split",
    default="test",
    show_default=True,
    type=click.Choice([*SPLITS, "all"]),
    help="Which split of a prepared dataset (ignored for folder:PATH).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print exactly one JSON object (n, top1, top5, top1_case_insensitive, per_class; "
    "with --charset also charset and excluded).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write a report into DIR: confusion matrix, per-class accuracy and most "
    "confident mistakes (PNGs), and report.md linking them.",
)
@charset_option("Score answers restricted to {sets}, over the images whose label is in the set.")
def evaluate(checkpoint, data, split, as_json, report_dir, charset):
    """Evaluate a trained classifier (or the reconstructions of a generative model).

    \b
    Example:
      charjax eval --checkpoint runs/resnet --split test
      charjax eval --checkpoint runs/resnet --data folder:my_letters/ --json
      charjax eval --checkpoint runs/resnet --report reports/resnet
      charjax eval --checkpoint runs/resnet --charset digits
    """
    report = evaluate_checkpoint(
        checkpoint, data=data, split=split, report_dir=report_dir, charset=charset
    )
    report.pop("confusion", None)
    click.echo(json.dumps(report) if as_json else describe(report))
