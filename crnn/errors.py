"""Errors raised by crnn stages.

Every error that is the user's to fix (a missing dataset, a wrong shape, NaN values, a
mismatched sampling rate) is a :class:`CrnnError`. The CLI turns it into one line on stderr and
a non-zero exit code; nothing else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CrnnError(Exception):
    """A problem with the user's input, described in one clear sentence."""


class MissingFieldError(CrnnError, KeyError):
    """A dataset, attribute, tree or branch that a file does not hold.

    The message names the file, the field, what the field was needed for and the closest
    names that the file does hold (in the style of uproot's ``KeyInFileError``).
    """

    def __init__(
        self,
        path: str,
        field: str,
        available: Iterable[str],
        *,
        kind: str = "dataset",
        expected: str = "",
    ) -> None:
        self.path = str(path)
        self.field = field
        self.available = sorted(str(a) for a in available)
        close = difflib.get_close_matches(field, self.available, n=3, cutoff=0.6)  # "traces" is not "labels"
        rest = [a for a in self.available if a not in close]
        listed = close + rest
        shown = ", ".join(repr(a) for a in listed[:12])
        if len(listed) > 12:
            shown += f", ... ({len(listed) - 12} more)"
        what = f" ({expected})" if expected else ""
        msg = f"{self.path}: no {kind} {field!r}{what}; "
        msg += f"available: {shown}" if listed else "the file holds none"
        if close:
            msg += f"; did you mean {close[0]!r}?"
        self.msg = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.msg
