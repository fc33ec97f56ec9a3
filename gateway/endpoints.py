"""The /v1 endpoints the gateway proxies, as data: one row per endpoint.

Everything that depends on the endpoint reads its row: the app (which paths are proxied), the
catalog (which kind of model may serve it), admission (streaming, the output cap), token
counting (where and how the prompt is written) and the stream relay (how a stream reports
usage). A new endpoint is a new row, never an ``if endpoint == ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# How a request writes its prompt, which decides how it is counted (gateway.tokens):
# chat messages; a Responses input (instructions plus a string or a list of items); or
# texts (a string, a list of strings, a token array or a list of token arrays).
EndpointKind = Literal["chat", "completion", "embedding", "response"]
ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True, slots=True)
class UsageShape:
    """How an endpoint's stream reports usage (usage itself is read by its fields,
    ``gateway.usage_dialects``).

    With ``typed_events`` a stream is a sequence of typed events that ends with a terminal
    ``response.*`` event, whose ``response`` object carries the usage (the Responses API);
    otherwise any chunk may carry it.
    """

    typed_events: bool = False


CHAT_USAGE = UsageShape()
RESPONSE_USAGE = UsageShape(typed_events=True)

# Every generating endpoint honours all three names, first present wins (README, "How money
# works"): a client that uses another endpoint's name is still capped, and the upstream
# decides whether it accepts the field.
OUTPUT_CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One proxied endpoint, served at ``/v1/<path>`` and forwarded to the same path upstream.

    ``cap_fields`` name the request fields that cap output tokens (empty: the endpoint
    produces none). ``include_usage``: a stream reports usage only when the request asks with
    ``stream_options.include_usage``, so the gateway always asks.
    """

    path: str
    kind: EndpointKind
    model_kind: ModelKind
    prompt_field: str
    usage: UsageShape
    streams: bool = False
    include_usage: bool = False
    cap_fields: tuple[str, ...] = ()


ENDPOINTS: Mapping[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint(
            "chat/completions",
            "chat",
            "chat",
            "messages",
            CHAT_USAGE,
            streams=True,
            include_usage=True,
            cap_fields=OUTPUT_CAP_FIELDS,
        ),
        Endpoint(
            "completions",
            "completion",
            "chat",
            "prompt",
            CHAT_USAGE,
            streams=True,
            include_usage=True,
            cap_fields=OUTPUT_CAP_FIELDS,
        ),
        Endpoint("embeddings", "embedding", "embedding", "input", CHAT_USAGE),
        Endpoint(
            "responses",
            "response",
            "chat",
            "input",
            RESPONSE_USAGE,
            streams=True,
            cap_fields=OUTPUT_CAP_FIELDS,
        ),
    )
}
