"""The revocation list: token ids (``jti``) in a file, one a line, ``#`` starting a comment.
Operators edit the file; the server notices without a restart by comparing the file's
modification time, size and inode at most once per ``CHECK_INTERVAL`` (a stat call on the
request path, no thread)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from llmkg.server.ratelimit import Clock

log = logging.getLogger("llmkg.server")

KEY = "security.authentication.revoked_tokens_file"
CHECK_INTERVAL = 1.0  # seconds between two looks at the file


class RevocationError(OSError):
    """The file cannot be read; the message names the key and the file."""


def parse(text: str) -> frozenset[str]:
    ids = set()
    for line in text.splitlines():
        jti = line.split("#", 1)[0].strip()
        if jti:
            ids.add(jti)
    return frozenset(ids)


class RevocationList:
    def __init__(
        self, path: str, clock: Clock = time.monotonic, interval: float = CHECK_INTERVAL
    ) -> None:
        self.path, self.clock, self.interval = Path(path), clock, interval
        self.signature: tuple[int, int, int] | None = None
        self.ids: frozenset[str] = frozenset()
        try:
            self._reload()
        except OSError as e:
            # At start a missing list is an error: tokens meant to be refused would pass.
            raise RevocationError(f"{KEY} {self.path}: cannot be read ({e.strerror})") from None
        self.checked = self.clock()

    def _reload(self) -> None:
        # The signature is taken before reading: a write racing the read changes it again,
        # and the next check reads the file once more.
        st = os.stat(self.path)
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self.signature:
            return
        self.ids = parse(self.path.read_text(encoding="utf-8", errors="replace"))
        self.signature = signature
        log.info(
            "revocation list loaded: %d token ids", len(self.ids), extra={"path": str(self.path)}
        )

    def refresh(self) -> None:
        """Reload the file if it changed, at most once per interval."""
        now = self.clock()
        if now - self.checked < self.interval:
            return
        self.checked = now
        try:
            self._reload()
        except OSError as e:
            # Mid-edit (removed and not yet written back) or broken: keep the last list
            # rather than letting every revoked token through.
            log.warning(
                "%s %s: cannot be read (%s); keeping the last list", KEY, self.path, e.strerror
            )

    def __contains__(self, jti: object) -> bool:
        self.refresh()
        return isinstance(jti, str) and jti in self.ids
