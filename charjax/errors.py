"""The one exception type users see.

Library code raises `CharjaxError` for anything a user can fix (a missing file, an unknown
name, a checkpoint from another model). The CLI turns it into one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class CharjaxError(Exception):
    """A problem with the user's input, stated in the user's words."""


class CharjaxWarning(UserWarning):
    """Something the user should know that did not stop the work (a damaged checkpoint that
    was skipped for an older one). The CLI prints it as one `charjax: warning:` line."""
