"""The one exception type users see.

Library code raises `CharjaxError` for anything a user can fix (a missing file, an unknown
name, a checkpoint from another model). The CLI turns it into one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""

from collections.abc import Iterator


class CharjaxError(Exception):
    """A problem with the user's input, stated in the user's words."""


class CharjaxWarning(UserWarning):
    """Something the user should know that did not stop the work (a damaged checkpoint that
    was skipped for an older one). The CLI prints it as one `charjax: warning:` line."""


def check_range(what: str, value, low, high=None) -> None:
    """Raises CharjaxError("WHAT must be between LOW and HIGH, got VALUE") unless
    low <= value <= high (with no `high`: "must be >= LOW")."""
    if high is None and not value >= low:
        raise CharjaxError(f"{what} must be >= {low}, got {value}")
    if high is not None and not low <= value <= high:
        raise CharjaxError(f"{what} must be between {low} and {high}, got {value}")


def error_chain(error: BaseException | None, context: bool = False) -> Iterator[BaseException]:
    """`error` and the errors that caused it (`__cause__`; with `context`, also the error being
    handled when it was raised), each once: libraries (orbax, tensorstore) wrap the error
    worth saying in their own."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (error.__context__ if context else None)
