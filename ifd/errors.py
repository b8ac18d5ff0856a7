"""The one error type the command line turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class IfdError(Exception):
    """A user-facing failure: the message names the thing and the reason, on one line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code
