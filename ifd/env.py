"""Secrets come from the environment, or from a git-ignored ``.env`` file (KEY=VALUE lines)."""

from __future__ import annotations

import os
from pathlib import Path


def load_dotenv(path: Path = Path(".env"), environ: dict | None = None) -> list[str]:
    """Set variables from ``path`` that the environment does not already have; returns their names.

    Lines are ``KEY=VALUE`` (optionally ``export KEY=VALUE``, values optionally quoted); blank
    lines and ``#`` comments are skipped. Values are never printed.
    """
    environ = os.environ if environ is None else environ
    if not path.is_file():
        return []
    loaded = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key and key not in environ:
            environ[key] = value
            loaded.append(key)
    return loaded
