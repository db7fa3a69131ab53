"""`charjax models`: the registered architectures, their size and cost."""

import click

from charjax.models.info import describe_models


@click.command()
@click.option(
    "--image-size",
    type=click.IntRange(16, 128),
    default=32,
    show_default=True,
    help="Input side in pixels at which to count parameters and FLOPs.",
)
def models(image_size: int):
    """List the model architectures, with their size and cost.

    Pass a name to `charjax train --arch NAME`. For each model: its kind, its number of
    trainable parameters, and the cost of one forward pass on one image at --image-size, in
    millions of floating-point operations as XLA counts them (a multiply-add is 2; a
    training step costs about 3x the forward pass).
    """
    infos = describe_models(image_size)
    name_w = max(len("name"), *(len(i.name) for i in infos))
    kind_w = max(len("kind"), *(len(i.kind) for i in infos))
    click.echo(
        f"{'name':<{name_w}}  {'kind':<{kind_w}}  {'params':>9}  "
        f"{f'MFLOP@{image_size}px':>11}  description"
    )
    for i in infos:
        click.echo(
            f"{i.name:<{name_w}}  {i.kind:<{kind_w}}  {i.params:>9,d}  {i.mflops:>11.1f}  "
            f"{i.description}"
        )
