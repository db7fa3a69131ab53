"""The `charjax` command: a click group whose subcommands live one module per area."""

import errno
import logging
import re
import sys
import warnings

import click

from charjax.atomic import user_path
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
from charjax.cli.train_lines import train_lines
from charjax.errors import CharjaxError, CharjaxWarning, error_chain


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
cli.add_command(train_lines)
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


# A full disk, a read-only or forbidden place to write, a lost network share: the user's to
# fix, and a traceback would bury the one line that says so.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


_TENSORSTORE_ERRNO = re.compile(r"\[os_error_code='(\d+)'\]")


def environment_error(error: BaseException) -> str | None:
    """One line for an OSError of `_ENVIRONMENT_ERRNOS` (or an error it caused, as orbax and
    tensorstore wrap them), else None."""
    for cause in error_chain(error, context=True):
        if isinstance(cause, OSError) and cause.errno in _ENVIRONMENT_ERRNOS:
            what = _ENVIRONMENT_ERRNOS[cause.errno]
            if not cause.filename:
                return what
            return user_path(str(cause.filename)) + f": {what}"
        # tensorstore (under orbax) raises ValueError and names the errno only in its text.
        code = _TENSORSTORE_ERRNO.search(str(cause)) if isinstance(cause, ValueError) else None
        if code and int(code.group(1)) in _ENVIRONMENT_ERRNOS:
            return _ENVIRONMENT_ERRNOS[int(code.group(1))]
    return None


def _quiet_closed_loop(default):
    """sys.unraisablehook without one library shutdown race: when an orbax save fails (a full
    disk), its thread closes its event loop while tensorstore's other writes are in flight, and
    each of their completions reports `RuntimeError('Event loop is closed')` from C as an
    unraisable exception. The save's own error reaches the CLI and is said in one line."""

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            default(unraisable)

    return hook


def main(argv=None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, no traceback;
    a `CharjaxWarning` becomes one `charjax: warning:` line."""
    with warnings.catch_warnings():
        default = warnings.showwarning

        def show(message, category, *args, **kwargs):
            if issubclass(category, CharjaxWarning):
                click.echo(f"charjax: warning: {message}", err=True)
            else:
                default(message, category, *args, **kwargs)

        warnings.showwarning = show
        unraisablehook = sys.unraisablehook
        sys.unraisablehook = _quiet_closed_loop(unraisablehook)
        # orbax logs through absl what it then raises (a failed background save, with its
        # traceback) and warns about the leftovers of a killed save it cleans up itself; the
        # raised error becomes one line here, so the log would only bury it.
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.CRITICAL)
        try:
            _main(argv)
        finally:
            absl.setLevel(level)
            sys.unraisablehook = unraisablehook


def _main(argv) -> None:
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
    except click.exceptions.Abort as e:  # click's form of a KeyboardInterrupt, among others
        interrupted = isinstance(e.__cause__, KeyboardInterrupt)
        click.echo(f"charjax: {'interrupted' if interrupted else 'aborted'}", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("charjax: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:
        line = environment_error(e)
        if line is None:
            raise  # a bug keeps its traceback
        click.echo(f"charjax: error: {line}", err=True)
        # A checkpoint write that failed (a full disk) leaves orbax's other writes failing in
        # the background; asyncio logs each one ("Task exception was never retrieved") as the
        # process exits. The failure is said once, above.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        sys.exit(2)


if __name__ == "__main__":
    main()
