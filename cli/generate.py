"""`charjax walk`, `charjax sample`, `charjax reconstruct`: use an autoencoder, VAE or CVAE."""

import json

import click

from charjax.generate import INTERPOLATIONS
from charjax.viz.glyphs import write_reconstructions, write_samples
from charjax.viz.walk import WalkOptions, write_walk

D = WalkOptions()  # defaults shown in --help come from the one options class


@click.command()
@click.option("--checkpoint", required=True, help="An autoencoder, VAE or CVAE run directory.")
@click.argument("images", nargs=-1, type=click.Path())
@click.option(
    "--random", default=D.random, type=int, help="Add N random glyphs of the run's dataset."
)
@click.option("--chars", default=D.chars, help='Add these characters, drawn from --font ("A3bZ").')
@click.option("--font", default=D.font, help="Font file for --chars [default: DejaVu Sans].")
@click.option(
    "--seconds-per-step",
    default=D.seconds_per_step,
    show_default=True,
    type=float,
    help="Time from one glyph to the next.",
)
@click.option("--fps", default=D.fps, show_default=True, type=int, help="Frames per second.")
@click.option(
    "--interp",
    default=D.interp,
    show_default=True,
    type=click.Choice(INTERPOLATIONS),
    help="Path between two codes: straight, or along the sphere (slerp).",
)
@click.option(
    "--classifier", default=None, help="A classifier run: caption frames with its top guess."
)
@click.option("--size", default=D.size, show_default=True, type=int, help="Glyph side, pixels.")
@click.option("--seed", default=D.seed, show_default=True, type=int, help="Seeds --random.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help=".mp4, .gif or .png (strip)."
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def walk(checkpoint, images, classifier, out, progress, **options):
    """Walk through the latent space: each glyph morphs into the next.

    The stops are the IMAGES (files, preprocessed like the run's data), then --chars, then
    --random glyphs, in that order. The video is an H.264 mp4 or a gif (by --out's
    extension); a .png gets a strip instead, one row per step with 9 frames each.

    \b
    Example:
      charjax walk --checkpoint runs/vae --chars "A3bZ" --classifier runs/resnet --out walk.mp4
      charjax walk --checkpoint runs/vae a.png b.png --interp slerp --out walk.gif
    """
    summary = write_walk(
        checkpoint,
        out,
        images,
        options=WalkOptions(**options),
        classifier=classifier,
        progress=progress,
    )
    click.echo(json.dumps(summary))


@click.command()
@click.option("--checkpoint", required=True, help="A VAE or CVAE run directory.")
@click.option("--char", default=None, help="Draw only this character (needs a CVAE).")
@click.option("-n", "n", default=64, show_default=True, type=int, help="How many glyphs.")
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=float,
    help="Scales the prior's spread: lower gives plainer glyphs, higher wilder ones.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .png to write.")
def sample(checkpoint, char, n, temperature, seed, out):
    """Draw new glyphs from a VAE's prior, as a grid (dark ink on white).

    A CVAE without --char cycles through the 62 classes in order.

    \b
    Example:
      charjax sample --checkpoint runs/vae -n 64 --out samples.png
      charjax sample --checkpoint runs/cvae --char g --temperature 0.8 --out g.png
    """
    summary = write_samples(checkpoint, out, n=n, char=char, temperature=temperature, seed=seed)
    click.echo(json.dumps(summary))


@click.command()
@click.option("--checkpoint", required=True, help="An autoencoder, VAE or CVAE run directory.")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--labels", default=None, help="A CVAE's class of each image, e.g. 'Ab3'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .png to write.")
def reconstruct(checkpoint, images, labels, out):
    """Encode and decode each IMAGE; write inputs beside their reconstructions.

    \b
    Example:
      charjax reconstruct --checkpoint runs/vae a.png b.png --out recon.png
    """
    summary = write_reconstructions(checkpoint, images, out, labels=labels)
    click.echo(json.dumps(summary))
