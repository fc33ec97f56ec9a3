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
# Anthropic's Messages API writes its prompt as ``system`` plus content-block messages.
EndpointKind = Literal["chat", "completion", "embedding", "response", "messages"]
ModelKind = Literal["chat", "embedding"]


@dataclass(frozen=True, slots=True)
class UsageShape:
    """How an endpoint's stream reports usage (usage itself is read by its fields,
    ``gateway.usage_dialects``).

    With ``typed_events`` a stream is a sequence of typed events that ends with one of the
    ``terminal`` event types (the Responses API's ``response.*``, whose ``response`` object
    carries the usage; Anthropic's ``message_stop``, after ``message_start`` and the cumulative
    ``message_delta`` carried it); otherwise any chunk may carry it.
    """

    typed_events: bool = False
    terminal: frozenset[str] = frozenset()


CHAT_USAGE = UsageShape()
RESPONSE_USAGE = UsageShape(
    typed_events=True,
    terminal=frozenset(("response.completed", "response.incomplete", "response.failed")),
)
MESSAGES_USAGE = UsageShape(typed_events=True, terminal=frozenset(("message_stop",)))

# Anthropic's error ``type`` per HTTP status (docs.anthropic.com/en/api/errors); a status not
# listed takes the type of its class (4xx invalid_request_error, 5xx api_error).
ANTHROPIC_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class ServerTool:
    """A tool the provider runs itself and bills per request, declared in a request's
    ``tools`` by a ``type`` starting with ``type_prefix``.

    Its uses are bounded by ``bound_field``: on each search tool (``bound_per_tool``, summed
    over them) or once on the request body; the gateway writes ``unasked_uses`` there when the
    caller set none, so the reservation holds upstream. ``bound_hint`` names that bound in a
    402. ``usage_field``: where usage reports the count (``usage.server_tool_use.<field>``);
    None when usage does not, and the answer's output items are counted instead
    (``gateway.proxy.usage.web_searches``). A type starting with one of ``refused_prefixes``
    matches too but is refused (400 ``unpriced_tool``): the provider prices it differently
    from the one ``web_search`` price a model has.
    """

    type_prefix: str
    usage_field: str | None
    unasked_uses: int
    bound_field: str
    bound_per_tool: bool
    bound_hint: str
    refused_prefixes: tuple[str, ...] = ()


# docs.anthropic.com, "Web search tool": ``{"type": "web_search_20250305", "name":
# "web_search", "max_uses": 5}``, $10 per 1,000 searches, results billed as input tokens,
# the count in ``usage.server_tool_use.web_search_requests``.
WEB_SEARCH = ServerTool(
    "web_search_",
    "web_search_requests",
    unasked_uses=10,
    bound_field="max_uses",
    bound_per_tool=True,
    bound_hint="the search tool's max_uses",
)
# OpenAI's Responses API (developers.openai.com/api/docs/guides/tools-web-search; pricing at
# developers.openai.com/api/docs/pricing, "Built-in tools"): ``{"type": "web_search"}`` (or
# ``web_search_2025_08_26``), $10 per 1,000 calls on every model, search content billed as
# input tokens. The tool has no use count of its own: the request's ``max_tool_calls`` bounds
# "total calls to built-in tools that can be processed in a response ... Any further attempts
# to call a tool by the model will be ignored" (API reference, ``responses.create``). Usage
# does not count the calls: each is a ``web_search_call`` output item. ``web_search_preview``
# costs $25 per 1,000 calls with free content on non-reasoning models and $10 on reasoning
# ones, which one ``web_search`` price per model cannot say: refused.
RESPONSES_WEB_SEARCH = ServerTool(
    "web_search",
    None,
    unasked_uses=10,
    bound_field="max_tool_calls",
    bound_per_tool=False,
    bound_hint="max_tool_calls",
    refused_prefixes=("web_search_preview",),
)

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

    ``api`` is the provider API (``api:`` of a provider in models.yaml) a model must be served
    by to take this endpoint. ``cap_required``: a request without an output cap is refused
    (400), as the upstream would. ``key_headers`` name request headers that may carry the
    caller's gateway key bare, when ``Authorization: Bearer`` is absent. ``passed_headers``
    are request headers forwarded upstream as sent, each with the value sent when the caller
    sent none (None: not sent). ``error_types``: errors on this endpoint take Anthropic's
    shape (``{"type": "error", "error": {"type", "message"}}``) with these types per status;
    None keeps OpenAI's. ``web_search``: the web search tool of this API, billed per request
    (``gateway.server_tools``); None: the endpoint has none.
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
    api: str = "openai"
    cap_required: bool = False
    key_headers: tuple[bytes, ...] = ()
    passed_headers: tuple[tuple[str, str | None], ...] = ()
    error_types: Mapping[int, str] | None = None
    web_search: ServerTool | None = None


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
            web_search=RESPONSES_WEB_SEARCH,
        ),
        Endpoint(
            "messages",
            "messages",
            "chat",
            "messages",
            MESSAGES_USAGE,
            streams=True,
            cap_fields=("max_tokens",),
            api="anthropic",
            cap_required=True,
            # Claude Code sends ANTHROPIC_API_KEY as x-api-key, ANTHROPIC_AUTH_TOKEN as Bearer.
            key_headers=(b"x-api-key",),
            passed_headers=(("anthropic-version", "2023-06-01"), ("anthropic-beta", None)),
            error_types=ANTHROPIC_ERROR_TYPES,
            web_search=WEB_SEARCH,
        ),
    )
}
