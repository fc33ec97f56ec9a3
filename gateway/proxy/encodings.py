"""Content-Encoding decoders for upstream answers (sans-IO): coded bytes in, the content out.

The gateway asks every upstream for ``Accept-Encoding: identity``, yet a CDN or proxy in front
of a provider may compress all the same (gadievron/raptor#547, apache/apisix#13544). Such an
answer is decoded here, so that it is metered from its content and relayed readable: the
client gets the content without the upstream's ``Content-Encoding``. Relaying the coded bytes
with their label instead would leave the client to decode a coding it may not support (br and
zstd are not in every HTTP library) and never asked for, and the gateway has to decode them to
meter them anyway.

Codings (RFC 9110 §8.4.1, the IANA HTTP Content Coding Registry): ``gzip`` and its alias
``x-gzip`` (RFC 1952; concatenated members are one body), ``deflate`` (the zlib format, RFC
1950; a raw deflate stream without the zlib header is read too, as browsers and aiohttp do),
``br`` (RFC 7932, the ``brotli`` package), ``zstd`` (RFC 8878; several frames are one body; the
standard library's ``compression.zstd`` from Python 3.14, ``backports.zstd`` before) and
``identity``. A list (``gzip, br``) names the codings in the order they were applied, so they
are undone in reverse. Any other coding is refused with ``Unreadable``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, Protocol


class Unreadable(Exception):
    """The answer is in a coding the gateway cannot decode (``coding`` names it)."""

    def __init__(self, coding: str) -> None:
        super().__init__(f"content coding {coding!r} is not supported")
        self.coding = coding


class Corrupt(Exception):
    """The coded bytes are not valid in their coding, or end before the coded stream does."""


class Codec(Protocol):
    def feed(self, data: bytes) -> bytes:
        """The content decoded from ``data`` so far (may be empty)."""

    def end(self) -> bytes:
        """What is left at the end of the body; raises ``Corrupt`` when it is cut short."""


class _Zlib:
    """gzip (``wbits`` 31) or deflate (15, or -15 for a raw stream found at the first byte)."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._obj: Any = None

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._obj is None:
            wbits = self._wbits
            # RFC 1950: the low nibble of a zlib stream's first byte is 8 (deflate); anything
            # else is a raw deflate stream, which some servers send as "deflate".
            if wbits == zlib.MAX_WBITS and data[0] & 0x0F != 8:
                wbits = -zlib.MAX_WBITS
            self._wbits = wbits
            self._obj = zlib.decompressobj(wbits)
        parts = []
        while data:
            if self._obj.eof:  # the next gzip member (RFC 1952 §2.2)
                self._obj = zlib.decompressobj(self._wbits)
            parts.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
        return b"".join(parts)

    def end(self) -> bytes:
        if self._obj is None:
            return b""
        if not self._obj.eof:
            raise Corrupt("the compressed stream ends before its end marker")
        out: bytes = self._obj.flush()
        return out


class _Brotli:
    def __init__(self) -> None:
        try:
            import brotli
        except ImportError:  # the dependency is declared; a broken install still says why
            raise Unreadable("br (install the brotli package)") from None
        self._obj = brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._fed = True
        return bytes(self._obj.process(data))

    def end(self) -> bytes:
        if self._fed and not self._obj.is_finished():
            raise Corrupt("the brotli stream ends before its last meta-block")
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._new = _zstd_decompressor()
        self._obj: Any = None

    def feed(self, data: bytes) -> bytes:
        parts = []
        while data:
            if self._obj is None or self._obj.eof:  # the next frame (RFC 8878 §3.1)
                self._obj = self._new()
            parts.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
        return b"".join(parts)

    def end(self) -> bytes:
        if self._obj is not None and not self._obj.eof:
            raise Corrupt("the zstd stream ends inside a frame")
        return b""


def _zstd_decompressor() -> Callable[[], Any]:
    try:
        from compression.zstd import ZstdDecompressor  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from backports.zstd import ZstdDecompressor
        except ImportError:
            raise Unreadable("zstd (install the backports.zstd package)") from None
    decompressor: Callable[[], Any] = ZstdDecompressor
    return decompressor


_CODECS: dict[str, Callable[[], Codec]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": lambda: _Zlib(zlib.MAX_WBITS),
    "br": _Brotli,
    "zstd": _Zstd,
}


class Decoder:
    """Undoes a list of codings, in the order given (the reverse of their application)."""

    def __init__(self, codecs: list[Codec]) -> None:
        self._codecs = codecs

    def feed(self, data: bytes) -> bytes:
        try:
            for codec in self._codecs:
                data = codec.feed(data)
        except Corrupt:
            raise
        except Exception as exc:  # each library has its own error (zlib.error, ZstdError, ...)
            raise Corrupt(f"{type(exc).__name__}: {exc}") from exc
        return data

    def end(self) -> bytes:
        """The rest of the content; raises ``Corrupt`` if a coded stream was cut short."""
        data = b""
        try:
            for codec in self._codecs:
                data = codec.feed(data) + codec.end()
        except Corrupt:
            raise
        except Exception as exc:
            raise Corrupt(f"{type(exc).__name__}: {exc}") from exc
        return data


def decoder(content_encoding: str | None) -> Decoder | None:
    """The decoder for a ``Content-Encoding`` header value; None when the body is as meant.
    Raises ``Unreadable`` for a coding not listed in this module's docstring."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codecs = []
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        make = _CODECS.get(coding)
        if make is None:
            raise Unreadable(coding)
        codecs.append(make())
    return Decoder(codecs) if codecs else None
