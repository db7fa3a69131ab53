"""The `charjax` command: a click group whose subcommands live one module per area."""

import sys

import click

from charjax.cli.data import data
from charjax.cli.demo import demo
from charjax.cli.evaluate import evaluate
from charjax.cli.export import export
from charjax.cli.generate import reconstruct, sample, walk
from charjax.cli.inspect import filters, plot, show
from charjax.cli.models import models
from charjax.cli.predict import predict
from charjax.cli.read import read
from charjax.cli.train import train
from charjax.errors import CharjaxError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="charjax")
def cli():
    """Train and use character recognisers (0-9, A-Z, a-z) with JAX.

    \b
    Start with:  charjax data fonts --out data/fonts   (build the offline font dataset)
                 charjax train --arch resnet-small     (train; builds the data if needed)
                 charjax predict --checkpoint runs/NAME image.png
    Every command has --help.
    """


cli.add_command(data)
cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(predict)
cli.add_command(export)
cli.add_command(read)
cli.add_command(show)
cli.add_command(filters)
cli.add_command(plot)
cli.add_command(walk)
cli.add_command(sample)
cli.add_command(reconstruct)
cli.add_command(models)
cli.add_command(demo)


def main(argv=None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, no traceback."""
    try:
        cli.main(args=argv, prog_name="charjax", standalone_mode=False)
    except CharjaxError as e:
        click.echo(f"charjax: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(2)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        click.echo(f"charjax: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"charjax: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("charjax: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("charjax: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
