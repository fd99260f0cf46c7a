"""What stops the server at start: ``StartupError``, whose message names the key and the
file, and the check that a configured file can be read."""

from __future__ import annotations

from pathlib import Path


class StartupError(RuntimeError):
    """The security config cannot be used; the message names the file."""


def readable(path_text: str, what: str) -> Path:
    path = Path(path_text)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise StartupError(f"{what} {path}: cannot be read ({e.strerror})") from None
    return path
