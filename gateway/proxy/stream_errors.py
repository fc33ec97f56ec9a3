"""The event that ends a stream the gateway ends itself, in the endpoint's own shape, so each
official SDK raises instead of returning a truncated answer as if it were whole.

=================  ======================================================================
endpoint           event
=================  ======================================================================
chat, completions  ``data: {"error": {message, type, code, param}}`` then ``data: [DONE]``
                   (the openai SDK raises ``APIError`` on an event with an ``error`` key)
Responses          an ``error`` event with the next ``sequence_number``
                   (platform.openai.com/docs/api-reference/responses-streaming/error)
Anthropic          ``event: error`` with ``{"type": "error", "error": {type, message}}``
                   (docs.anthropic.com/en/docs/build-with-claude/streaming, "Error events")
=================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from gateway.endpoints import Endpoint


@dataclass(frozen=True, slots=True)
class StreamError:
    """Why the gateway ended a stream: ``code`` (OpenAI's ``code``), ``message``, and the
    error type in OpenAI's and in Anthropic's vocabulary."""

    code: str
    message: str
    openai_type: str
    anthropic_type: str


CREDIT_EXHAUSTED: Final = StreamError(
    "insufficient_quota",
    "Insufficient credit: the balance does not cover more output, so the stream was ended "
    "here; what was sent is billed. Top up your balance to continue.",
    openai_type="insufficient_quota",
    anthropic_type="billing_error",
)
UPSTREAM_CUT: Final = StreamError(
    "upstream_cut",
    "The upstream connection ended before the answer did: what came is all there is, and it "
    "is billed as such. Retry the call for a whole answer.",
    openai_type="server_error",
    anthropic_type="api_error",
)


def stream_error(endpoint: Endpoint, error: StreamError, sequence_number: int = 0) -> bytes:
    """The bytes of the event(s) that end a stream of ``endpoint`` with ``error``
    (``sequence_number``: the Responses event's, one after the last one sent)."""
    if endpoint.error_types is not None:
        body = {"type": "error", "error": {"type": error.anthropic_type, "message": error.message}}
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
    if endpoint.usage.typed_events:
        event = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": None,
            "sequence_number": sequence_number,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
    chunk = {
        "error": {
            "message": error.message,
            "type": error.openai_type,
            "code": error.code,
            "param": None,
        }
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
