"""The one exception type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class VizError(Exception):
    """A problem the user can fix (bad input, bad option, unwritable output).

    The message is a single line that says what is wrong and, where possible, what to do.
    """
