"""`charjax eval`: accuracy of a checkpoint on a dataset split or an image folder."""

import json

import click

from charjax.evaluate import evaluate_checkpoint
from charjax.predict import default_checkpoint


@click.command(name="eval")
@click.option(
    "--checkpoint",
    default=None,
    help="A run directory or checkpoint directory [default: the bundled model; give it "
    "--data, as its training data is not on this machine].",
)
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
    type=click.Choice(["train", "val", "test", "all"]),
    help="Which split of a prepared dataset (ignored for folder:PATH).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print exactly one JSON object (n, top1, top5, top1_case_insensitive, per_class).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write a report into DIR: confusion matrix, per-class accuracy and most "
    "confident mistakes (PNGs), and report.md linking them.",
)
def evaluate(checkpoint, data, split, as_json, report_dir):
    """Evaluate a trained classifier (or the reconstructions of a generative model).

    \b
    Example:
      charjax eval --checkpoint runs/resnet --split test
      charjax eval --checkpoint runs/resnet --data folder:my_letters/ --json
      charjax eval --checkpoint runs/resnet --report reports/resnet
    """
    checkpoint = checkpoint or str(default_checkpoint())
    report = evaluate_checkpoint(checkpoint, data=data, split=split, report_dir=report_dir)
    report.pop("confusion", None)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{report['data']}: {report['n']} images")
    if "mse" in report:  # an autoencoder, VAE or CVAE: reconstruction, not accuracy
        click.echo(f"  loss (recon + beta KL)  {report['loss']:.4f}")
        click.echo(f"  reconstruction (BCE)    {report['recon']:.4f}  per image")
        if "kl" in report:
            click.echo(f"  KL                      {report['kl']:.4f}  per image")
        click.echo(f"  mean squared error      {report['mse']:.5f}  per pixel, 0..1 scale")
        return
    click.echo(f"  top-1                   {report['top1']:.4f}")
    click.echo(f"  top-1 case-insensitive  {report['top1_case_insensitive']:.4f}")
    click.echo(f"  top-5                   {report['top5']:.4f}")
    worst = sorted(report["per_class"].items(), key=lambda kv: kv[1])[:8]
    click.echo("  hardest classes: " + ", ".join(f"{c} {a:.2f}" for c, a in worst))
    if report_dir:
        click.echo(f"  report                  {report['report']}")
