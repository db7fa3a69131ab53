"""`charjax show`, `charjax filters`, `charjax plot`: look inside a run and at its training."""

import click

from charjax.viz.activations import show_activations, visualize_filters
from charjax.viz.curves import X_AXES, plot_runs

_CHECKPOINT = click.option(
    "--checkpoint", required=True, help="A run directory (from `charjax train`) or checkpoint."
)


@click.command()
@_CHECKPOINT
@click.argument("image", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    default="activations.png",
    show_default=True,
    help="The PNG to write.",
    type=click.Path(),
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    help="Show only this layer (repeatable), e.g. ResNetBlock_0/Conv_1 [default: the model's "
    "top-level layers].",
)
def show(checkpoint, image, out, layers):
    """Show what each layer makes of an image.

    Draws the image as the model sees it (preprocessed with the run's spec) and its top-3
    guesses, then each layer's output: a grid of feature maps for conv layers, a grid of
    values for dense ones (the last one labelled with the classes), then the probabilities.
    Blue is negative, black zero, red to yellow positive; each layer has its own scale.

    \b
    Example:
      charjax show --checkpoint runs/resnet my_letter.png --out act.png
    """
    path = show_activations(checkpoint, image, out, layers=list(layers) or None)
    click.echo(str(path))


@click.command()
@_CHECKPOINT
@click.option(
    "--layer",
    default=None,
    help="Layer whose filters to show, e.g. stem_conv or Conv_1 [default: the first]; "
    "a wrong name lists the valid ones.",
)
@click.option(
    "--steps", default=200, show_default=True, type=click.IntRange(1), help="Ascent steps."
)
@click.option(
    "--out", default="filters.png", show_default=True, help="The PNG to write.", type=click.Path()
)
def filters(checkpoint, layer, steps, out):
    """Show what each filter of a layer responds to most.

    For every filter (channel) of the layer, gradient ascent turns faint noise into the input
    image that maximises the filter's mean activation, blurring it every few steps so it keeps
    strokes rather than pixel noise (all filters at once, jitted). A dense layer gives one
    image per unit; for the last layer that is the model's idea of each character.

    \b
    Example:
      charjax filters --checkpoint runs/resnet --layer stem_conv --out filters.png
      charjax filters --checkpoint runs/resnet --layer Dense_0 --steps 400
    """
    result = visualize_filters(checkpoint, layer, out, steps=steps)
    raised = float((result.after > result.before).mean())
    click.echo(f"{out}")
    click.echo(
        f"{result.layer}: {len(result.after)} filters, mean activation "
        f"{result.before.mean():.3g} -> {result.after.mean():.3g} "
        f"(raised for {raised:.0%})",
        err=True,
    )


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out", default="curves.png", show_default=True, help="The PNG to write.", type=click.Path()
)
@click.option(
    "--x",
    "x_axis",
    default="step",
    show_default=True,
    type=click.Choice(X_AXES),
    help="Horizontal axis (epoch compares runs with different batch sizes).",
)
@click.option(
    "--smooth",
    default=0.6,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Moving-average weight for train curves (0: raw).",
)
def plot(runs, out, x_axis, smooth):
    """Plot loss, accuracy and learning rate of one or more runs.

    Reads each run's metrics.jsonl (train lines and val evaluations) and overlays the runs,
    one colour each. Needs matplotlib: pip install 'charjax[plot]'.

    \b
    Example:
      charjax plot runs/resnet --out curves.png
      charjax plot runs/resnet runs/cnn runs/tiny --x epoch
    """
    click.echo(str(plot_runs(runs, out, x=x_axis, smooth=smooth)))
