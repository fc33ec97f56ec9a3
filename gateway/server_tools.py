"""Tools the provider runs itself and bills per request: how many requests a call may make, so
admission can reserve them (pure).

Anthropic's web search (docs.anthropic.com, "Web search tool") is declared in ``tools`` as
``{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}``; each search is billed
per request ($10 per 1,000 on Claude's list prices) and its results enter the context, billed
as input tokens. So a call that may search reserves ``max_uses`` requests (the gateway writes
``ServerTool.unasked_uses`` when the caller set none, so the bound holds upstream) and, for
their results, what the model's context window leaves of the input, at the input price.
"""

from __future__ import annotations

from typing import Any

from gateway.endpoints import Endpoint, ServerTool
from gateway.errors import BadRequest


def requested_uses(endpoint: Endpoint, payload: dict[str, Any], *, priced: bool) -> int:
    """The web search requests ``payload`` allows (the sum of its search tools' ``max_uses``,
    ``unasked_uses`` for one without), 0 when it declares none or the endpoint has no such
    tool. Raises BadRequest (``tools.<i>.max_uses``) for a ``max_uses`` that is not a positive
    integer, and (``unpriced_tool``) when the model has no ``web_search`` price."""
    tool = endpoint.web_search
    if tool is None:
        return 0
    uses = 0
    for i, spec in _searches(tool, payload):
        value = spec.get("max_uses")
        if value is None:
            uses += tool.unasked_uses
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(
                f"tools.{i}.max_uses: must be a positive integer",
                param=f"tools.{i}.max_uses",
                code="invalid_value",
            )
        else:
            uses += value
    if uses and not priced:
        raise BadRequest(
            "This model cannot run web searches through this gateway: models.yaml sets no "
            "web_search price for it.",
            param="tools",
            code="unpriced_tool",
        )
    return uses


def write_uses(endpoint: Endpoint, payload: dict[str, Any]) -> None:
    """Makes every web search tool of the forwarded request carry the ``max_uses`` that was
    reserved. Edits ``payload`` in place: it is encoded once, when forwarded."""
    tool = endpoint.web_search
    if tool is None:
        return
    for _, spec in _searches(tool, payload):
        if spec.get("max_uses") is None:
            spec["max_uses"] = tool.unasked_uses


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
