"""The stream relay's side of the ASGI send: the upstream's relayed headers on the response
start, every body message scrubbed of the provider key (``gateway.proxy.scrub``).

A whole answer needs no wrapper (the pipeline adds its headers and scrubs its body before
sending it, so its Content-Length is right); a stream does, since its bytes go out as they
come and an echo of the key may be split across them.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Message, Send

from gateway.listeners import Header
from gateway.proxy.scrub import Secret, StreamScrub


def outbound(send: Send, headers: Sequence[Header], secret: Secret | None) -> Send:
    """``send``, adding ``headers`` to the response start and scrubbing the body messages."""
    if not headers and secret is None:
        return send
    scrubber = StreamScrub(secret) if secret is not None else None

    # The relay builds a fresh message per send, so it is changed in place: no copy per chunk.
    async def relayed(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if scrubber is not None:
                body = scrubber.feed(message.get("body", b""))
                more = message.get("more_body", False)
                if not more:
                    body += scrubber.flush()
                elif not body:
                    return  # all of it held back for the next read
                message["body"] = body
        elif kind == "http.response.start" and headers:
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return relayed
