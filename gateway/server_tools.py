"""Tools the provider runs itself and bills per request: how many requests a call may make, so
admission can reserve them (pure).

Anthropic's web search (docs.anthropic.com, "Web search tool") is declared in ``tools`` as
``{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}``; OpenAI's Responses
API as ``{"type": "web_search"}``, bounded by the request's ``max_tool_calls`` (API reference,
``responses.create``; ``gateway.endpoints.RESPONSES_WEB_SEARCH``). Each search is billed per
request ($10 per 1,000 on both providers' list prices) and its results enter the context,
billed as input tokens. So a call that may search reserves its bound of requests (the gateway
writes ``ServerTool.unasked_uses`` when the caller set none, so the bound holds upstream) and,
for their results, what the model's context window leaves of the input, at the input price.
"""

from __future__ import annotations

from typing import Any

from gateway.endpoints import Endpoint, ServerTool
from gateway.errors import BadRequest


def requested_uses(endpoint: Endpoint, payload: dict[str, Any], *, priced: bool) -> int:
    """The web search requests ``payload`` allows, 0 when it declares no search tool or the
    endpoint has none: the sum of its search tools' ``max_uses`` (Anthropic), or the request's
    ``max_tool_calls`` (Responses), ``unasked_uses`` where unset. Raises BadRequest
    (``<field>``, ``invalid_value``) for a bound that is not a positive integer, and
    (``unpriced_tool``) for a refused tool type or when the model has no ``web_search``
    price."""
    tool = endpoint.web_search
    if tool is None:
        return 0
    searches = _searches(tool, payload)
    if not searches:
        return 0
    for i, spec in searches:
        if spec["type"].startswith(tool.refused_prefixes):
            raise BadRequest(
                f"tools.{i}.type: {spec['type']} is not served through this gateway: its "
                f"provider prices it apart from the model's web_search price. Use "
                f'{{"type": "{tool.type_prefix}"}}.',
                param=f"tools.{i}.type",
                code="unpriced_tool",
            )
    if tool.bound_per_tool:
        uses = sum(
            _bound(spec.get(tool.bound_field), f"tools.{i}.{tool.bound_field}", tool)
            for i, spec in searches
        )
    else:
        uses = _bound(payload.get(tool.bound_field), tool.bound_field, tool)
    if not priced:
        raise BadRequest(
            "This model cannot run web searches through this gateway: models.yaml sets no "
            "web_search price for it.",
            param="tools",
            code="unpriced_tool",
        )
    return uses


def write_uses(endpoint: Endpoint, payload: dict[str, Any]) -> None:
    """Makes the forwarded request carry the search bound that was reserved where the caller
    set none: ``max_uses`` on each search tool, or ``max_tool_calls`` on the request. Edits
    ``payload`` in place: it is encoded once, when forwarded."""
    tool = endpoint.web_search
    if tool is None:
        return
    searches = _searches(tool, payload)
    if not searches:
        return
    holders = [spec for _, spec in searches] if tool.bound_per_tool else [payload]
    for holder in holders:
        if holder.get(tool.bound_field) is None:
            holder[tool.bound_field] = tool.unasked_uses


def results_window(window: int | None) -> int:
    """The input tokens a call's search results may fill: the model's context window. Raises
    BadRequest (``unbounded_input``) when the model has none configured."""
    if window is None:
        raise BadRequest(
            "This model cannot run web searches through this gateway: their results add input "
            "tokens the request body does not bound and models.yaml sets no context_window "
            "for the model, so the call cannot be reserved safely.",
            param="tools",
            code="unbounded_input",
        )
    return window


def _bound(value: Any, param: str, tool: ServerTool) -> int:
    if value is None:
        return tool.unasked_uses
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{param}: must be a positive integer", param=param, code="invalid_value")
    return value


def _searches(tool: ServerTool, payload: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    tools = payload.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        (i, spec)
        for i, spec in enumerate(tools)
        if isinstance(spec, dict)
        and isinstance(spec.get("type"), str)
        and spec["type"].startswith(tool.type_prefix)
    ]
