"""Reading the TOML files a user edits, with one-line errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ifd.errors import IfdError


def read_toml(path: Path, missing: str) -> dict:
    """A TOML file's tables; ``missing`` is the one-line error when the file does not exist."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise IfdError(missing) from None
    except tomllib.TOMLDecodeError as exc:
        raise IfdError(f"{path}: invalid TOML ({exc})") from None
