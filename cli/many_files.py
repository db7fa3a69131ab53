"""How a command that takes many IMAGE files reports the ones it cannot read: each file's
error on stderr (and in --json, a line for it) while the others are answered, then exit 2.
A single IMAGE's error is the command's one error line, as for any other bad input."""

import json

import click

from charjax.errors import CharjaxError


def report_unreadable(path, error: CharjaxError, count: int, as_json: bool) -> None:
    """Reports `error` for `path`; with one IMAGE in all (`count`), raises it instead."""
    if count == 1:
        raise error
    click.echo(f"charjax: error: {error}", err=True)
    if as_json:
        click.echo(json.dumps({"file": str(path), "error": str(error)}))


def fail_if_unreadable(failed: int, count: int) -> None:
    """After every readable file was answered, the exit status says not all were."""
    if failed:
        raise CharjaxError(f"{failed} of {count} images could not be read")
