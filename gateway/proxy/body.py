"""An upstream answer's body as meant: read once from aiohttp, its Content-Encoding undone.

``sniff`` reads just enough to tell what the answer is (``content.kind_of``) and holds those
bytes for ``chunks`` or ``read``, so nothing is lost or read twice. A read error met while
sniffing is held too, and raised where the answer is read, as if it had come then. Coded bytes
that do not decode raise ``aiohttp.ClientPayloadError``, as aiohttp does for its own codings,
so callers handle one kind of broken answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from gateway.errors import UpstreamError
from gateway.proxy import encodings
from gateway.proxy.content import Kind, kind_of


class UpstreamBody:
    """The decoded body of ``response``. Raises ``UpstreamError`` (502) when its
    Content-Encoding is one the gateway cannot read."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self._response = response
        coding = response.headers.get("Content-Encoding")
        try:
            self._decoder = encodings.decoder(coding)
        except encodings.Unreadable as exc:
            raise UpstreamError(
                f"the upstream answered in content coding {exc.coding!r}, which the gateway "
                "cannot read",
                code="upstream_encoding",
            ) from exc
        self._held = b""
        self._error: BaseException | None = None
        self._ended = False

    async def sniff(self) -> Kind:
        """What the answer is, from its first bytes (held for ``chunks`` and ``read``)."""
        while True:
            kind = kind_of(self._held, at_end=self._ended or self._error is not None)
            if kind is not None:
                return kind
            try:
                self._held += await self._next()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._error = exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, decoded (never an empty piece)."""
        held, self._held = self._held, b""
        if held:
            yield held
        if self._error is not None:
            raise self._error
        while not self._ended:
            data = await self._next()
            if data:
                yield data

    async def read(self) -> bytes:
        """The whole body, decoded."""
        if self._decoder is None and not (self._held or self._ended or self._error):
            return await self._response.read()  # the common case: one buffer, no copy
        return b"".join([piece async for piece in self.chunks()])

    def close(self) -> None:
        """Drops the upstream connection (an answer not read to its end)."""
        self._response.close()

    async def _next(self) -> bytes:
        """The next decoded bytes (b"" once at the end, or while a coding holds them back)."""
        if self._ended:
            return b""
        data = await self._response.content.readany()
        if self._decoder is None:
            self._ended = not data
            return data
        try:
            if data:
                return self._decoder.feed(data)
            self._ended = True
            return self._decoder.end()
        except encodings.Corrupt as exc:
            self._ended = True
            raise aiohttp.ClientPayloadError(f"undecodable answer: {exc}") from exc
