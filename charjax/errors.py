"""The one exception type users see.

Library code raises `CharjaxError` for anything a user can fix (a missing file, an unknown
name, a checkpoint from another model). The CLI turns it into one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class CharjaxError(Exception):
    """A problem with the user's input, stated in the user's words."""
