"""The /v1 endpoints the gateway proxies, as data: one row per endpoint.

Everything that depends on the endpoint reads its row: the app (which paths are proxied), the
catalog (which kind of model may serve it), admission (streaming, the output cap, input held
upstream), token counting (where and how the prompt is written) and the stream relay (how a
stream reports usage). A new endpoint is a new row, never an ``if endpoint == ...``.
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

# Every name any endpoint caps output with. A cap the caller wrote under another endpoint's
# name is not trusted for the reservation (the upstream may ignore it), but it is still lowered
# to the reserved cap before forwarding, in case the upstream does honour it.
OUTPUT_CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One proxied endpoint, served at ``/v1/<path>`` and forwarded to the same path upstream.

    ``cap_fields`` name the request fields the upstream honours as the output cap, first
    present wins (empty: the endpoint produces none); the first one is what the gateway writes
    when the caller set none. ``held_fields`` name request fields (dotted paths into nested
    objects) whose presence means part of the prompt is held upstream (a stored response,
    conversation, prompt template or context cache), so the body's length does not bound it.
    ``include_usage``: a stream reports usage only when the request asks with
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
    held_fields: tuple[str, ...] = ()


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
            # OpenAI's current name first: its reasoning models refuse max_tokens.
            cap_fields=("max_completion_tokens", "max_tokens"),
            # Gemini's OpenAI-compatible API reads a context cache created beforehand.
            held_fields=("extra_body.google.cached_content",),
        ),
        Endpoint(
            "completions",
            "completion",
            "chat",
            "prompt",
            CHAT_USAGE,
            streams=True,
            include_usage=True,
            cap_fields=("max_tokens",),
        ),
        Endpoint("embeddings", "embedding", "embedding", "input", CHAT_USAGE),
        Endpoint(
            "responses",
            "response",
            "chat",
            "input",
            RESPONSE_USAGE,
            streams=True,
            cap_fields=("max_output_tokens",),
            # A stored response or conversation to continue, a stored prompt template.
            held_fields=("previous_response_id", "conversation", "prompt"),
        ),
    )
}
