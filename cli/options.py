"""Options that several commands share, each with its meaning and its check written once."""

import click

from charjax.labels import CHARSET_NAMES, parse_charset


def _check_charset(ctx, param, value):
    # Parsed while the options are read, so a typo fails before any model or data loads; a bad
    # set raises CharjaxError, which the CLI turns into its one-line error.
    if value is not None:
        parse_charset(value)
    return value


def charset_option(help_text: str):
    """`--charset`, checked on the spot; `help_text` says what it does for this command, with
    {sets} where the accepted sets are named."""
    return click.option(
        "--charset",
        default=None,
        callback=_check_charset,
        help=help_text.format(sets=CHARSET_NAMES),
    )


def bundled_checkpoint_option(note: str = ""):
    """`--checkpoint` of the commands that fall back to the bundled model."""
    return click.option(
        "--checkpoint",
        default=None,
        help=f"A run directory or checkpoint directory [default: the bundled model{note}].",
    )
