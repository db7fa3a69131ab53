"""`charjax demo`: the end-to-end tour that `make demo` runs."""

import click

from charjax.demo import DemoConfig, run_demo

D = DemoConfig()


@click.command()
@click.option("--workdir", default=D.workdir, show_default=True, help="Run directory.")
@click.option(
    "--steps",
    default=D.steps,
    show_default=True,
    type=int,
    help="Training steps (the default takes about 10 minutes on 2 CPU cores).",
)
def demo(workdir, steps):
    """Build the font dataset, train resnet-small, evaluate on held-out fonts, predict samples.

    Running it again reuses the finished run (or resumes an interrupted one).
    """
    run_demo(
        DemoConfig(workdir=workdir, samples_dir=f"{workdir}/samples", steps=steps),
        echo=lambda s: click.echo(s, err=True),
    )
