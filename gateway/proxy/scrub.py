"""Keeps the operator's provider key out of what a caller receives: bodies, streams, headers.

An upstream may echo the key it was sent: whole (some self-hosted servers quote the
``Authorization`` header back in their errors), or masked. OpenAI's 401 masks it as the first
8 characters, one ``*`` per hidden character and the last 4 (``Incorrect API key provided:
sk-proj-****...****abcd.``; seen verbatim in public reports of that error, also for keys with
other prefixes). Other servers show fewer characters around ``...`` or an ellipsis.

What is removed (each replaced by ``[redacted]``, which keeps JSON valid):

- the key whole (and with ``/`` escaped as ``\\/``, as some JSON encoders write it);
- a masked echo: a mask (``*``, ``..`` or longer, ``…``, ``•``, or their JSON escapes) then
  at most 8 key characters and the key's last 4 characters, together with the key-like
  characters just before the mask (the shown prefix). The last 4 are what identifies a key,
  so an echo that shows them is an echo whatever it shows in front.

Every echo form ends with the key's last 4 characters, so one ``bytes.find`` of them per read
decides whether anything needs a closer look: an answer that does not contain them costs one
search. A stream may split an echo across reads; ``StreamScrub`` holds back a read's trailing
run of key-like bytes (a whole SSE event ends in a newline, so in practice nothing waits) and
scrubs it with the next read.
"""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = b"[redacted]"
SUFFIX = 4  # the key's last characters a masked echo shows (OpenAI: 4)
# A mask: stars, two or more dots, an ellipsis or bullet (UTF-8 or JSON-escaped).
_MASK = rb"(?:\*|\.{2,}|\xe2\x80\xa6|\xe2\x80\xa2|\\u2026|\\u2022)+"
# Bytes an echo can be made of besides the key's own: masks, their UTF-8 and escape bytes.
_ECHO_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-*.\\" + bytes(
    range(0x80, 0x100)
)


class Secret:
    """One provider key, compiled for scrubbing (build with ``secret_for``)."""

    __slots__ = ("_pattern", "echo_bytes", "longest", "marker")

    def __init__(self, key: str) -> None:
        raw = key.encode()
        # Characters of this key beyond the usual alphabet also belong to an echo.
        extra = bytes(sorted({c for c in raw if c not in _ECHO_BYTES}))
        chars = rb"[A-Za-z0-9_\-" + b"".join(re.escape(bytes([c])) for c in extra) + rb"]"
        # JSON may write "/" as "\/".
        whole = re.escape(raw).replace(b"/", rb"\\?/")
        last = raw[-SUFFIX:]
        tail = re.escape(last).replace(b"/", rb"\\?/")
        masked = chars + rb"{0,16}" + _MASK + chars + rb"{0,8}?" + tail
        self._pattern = re.compile(whole + b"|" + masked)
        # Searched for in every read: every echo ends with it (after its last "/", which an
        # encoder may have escaped).
        self.marker = last.rpartition(b"/")[2] or b"/"
        self.echo_bytes = _ECHO_BYTES + extra
        # The longest echo a stream must be able to hold back whole: the key escaped, or a
        # mask as long as the key between the most characters shown around it.
        self.longest = 2 * len(raw) + 32

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every echo of the key replaced."""
        if self.marker not in data:
            return data
        return self._pattern.sub(REDACTED, data)

    def scrub_text(self, text: str) -> str:
        """The same for a str (a log line)."""
        return self.scrub(text.encode()).decode("utf-8", "replace")


@lru_cache(maxsize=256)
def _compiled(key: str) -> Secret:
    return Secret(key)


def secret_for(key: str | None) -> Secret | None:
    """The compiled scrubber of a provider key (cached per key); None for no key, or a key
    too short to be told apart from ordinary text."""
    if not key or len(key) < 2 * SUFFIX:
        return None
    return _compiled(key)


def scrub(secret: Secret | None, data: bytes) -> bytes:
    return data if secret is None else secret.scrub(data)


class StreamScrub:
    """Scrubs a byte stream read by read: ``feed`` each read, send what it returns; ``flush``
    at the end. An echo split across reads is caught: a read's trailing run of bytes that may
    still grow into an echo waits for the next read."""

    __slots__ = ("_held", "_secret")

    def __init__(self, secret: Secret) -> None:
        self._secret = secret
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if self._held:
            data, self._held = self._held + data, b""
        secret = self._secret
        if secret.marker in data:
            data = secret.scrub(data)
        # Fast path: a read that ends where no echo can (an SSE event ends with a newline).
        if not data or data[-1] not in secret.echo_bytes:
            return data
        window = data[-secret.longest :]
        keep = len(data) - len(window) + len(window.rstrip(secret.echo_bytes))
        self._held = data[keep:]
        return data[:keep]

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return self._secret.scrub(held)
