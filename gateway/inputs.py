"""Inputs whose cost the request body does not bound, and the tokens reserved for them (pure).

The free prompt bound (``gateway.tokens.prompt_bound``) holds because every text token covers
at least one byte of the body. Some inputs break it: an image URL or a small PNG can count as
thousands of tokens, an audio clip or a PDF as many more, and a request can name a prompt the
provider keeps (a stored response or conversation, a prompt template, a context cache). Each
kind is reserved by one rule (README, "Reservation rules per input kind"):

======  ==============================================  ======================================
kind    found as                                        reserved
======  ==============================================  ======================================
image   a part typed ``image_url`` / ``input_image``    the model's ``image_tokens`` rule per
                                                        image; without one, the context window
audio   an ``input_audio`` part, a message's ``audio``  the model's context window
file    a ``file`` / ``input_file`` part (PDFs, ...)    the model's context window
held    an endpoint's ``held_fields``, an               the model's context window
        ``item_reference`` item
other   a typed part or item not known to be text       the model's context window
======  ==============================================  ======================================

A provider refuses (or truncates to fit) an input longer than the model's context window, so
the whole input is never reserved above ``context_window``. A kind whose rule needs the context
window, on a model with none configured, is refused with 400 ``unbounded_input``: no default
number bounds every model (OpenAI alone ranges from 1,275 tokens per image on o3 to 48,169 on
gpt-4o-mini, and context windows from 16k to 1M tokens), and a refusal costs nobody money.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.endpoints import Endpoint
from gateway.errors import BadRequest

InputKind = Literal["image", "audio", "file", "held", "other"]

# Typed parts and items whose content is text written in the body (the byte bound covers
# them), with the typed objects that travel inside them (annotations, tool call headers).
TEXT_TYPES = frozenset(
    {
        "text",
        "input_text",
        "output_text",
        "refusal",
        "message",
        "reasoning",
        "summary_text",
        "reasoning_text",
        "function",
        "custom",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "url_citation",
        "file_citation",
        "container_file_citation",
        "file_path",
        # Anthropic's Messages API: content blocks written in the body, citations, and the
        # typed objects inside blocks (cache_control, an image's or document's source, whose
        # parent block decides its kind).
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "web_search_result",
        "web_search_tool_result_error",
        "search_result",
        "char_location",
        "page_location",
        "content_block_location",
        "web_search_result_location",
        "search_result_location",
        "ephemeral",
        "base64",
        "url",
        "content",
    }
)
# Typed parts and items whose tokens the body's bytes do not bound; any other type not in
# TEXT_TYPES is "other" (a video part, a hosted tool's call record): unknown means unbounded.
PART_KINDS: Mapping[str, InputKind] = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",  # Anthropic
    "document": "file",  # Anthropic: a PDF or text document
    "input_audio": "audio",
    "file": "file",
    "input_file": "file",
    "item_reference": "held",
}
# OpenAI's tile rule: an image is scaled to fit 2048 x 2048, then its shortest side to 768,
# and covered by 512 px tiles; so at most ceil(2048/512) x ceil(768/512) = 8 tiles.
FIT, SHORT, TILE_PX = 2048, 768, 512
MAX_TILES = 8


@dataclass(frozen=True, slots=True)
class ImageRule:
    """Tokens one image input counts for (``image_tokens`` in models.yaml).

    OpenAI's tile formula (GPT-4o, GPT-4.1, GPT-5, o1, o3, ...; platform.openai.com "Images and
    vision", "Calculating costs"): ``base`` tokens at ``detail: low``, else ``base + tile x
    tiles``. ``tile == 0`` is a flat ``base`` per image, for any other provider's rule given
    as its maximum (e.g. ``ceil(1536 patches x multiplier)`` for OpenAI's patch-priced
    gpt-4.1-mini / gpt-5-mini / o4-mini).
    """

    base: int
    tile: int = 0

    def tokens(self, width: int, height: int, detail: str | None = None) -> int:
        """The formula for a ``width`` x ``height`` px image, when its size is known."""
        if detail == "low" or self.tile == 0:
            return self.base
        w, h = max(width, 1), max(height, 1)
        if max(w, h) > FIT:  # scaled down to fit the square, aspect kept
            w, h = _scaled(w, h, FIT, max(w, h))
        if min(w, h) > SHORT:  # then down so the shortest side is 768
            w, h = _scaled(w, h, SHORT, min(w, h))
        tiles = -(-w // TILE_PX) * -(-h // TILE_PX)
        return self.base + self.tile * tiles

    def most(self, detail: str | None = None) -> int:
        """The formula's largest value over every image size: what a reservation needs when
        the size is unknown (a URL, or bytes the gateway does not decode)."""
        return self.base if detail == "low" else self.base + self.tile * MAX_TILES


def _scaled(w: int, h: int, target: int, side: int) -> tuple[int, int]:
    # Rounded up, so the tile count is never below the provider's.
    return -(-w * target // side), -(-h * target // side)


@dataclass(frozen=True, slots=True)
class Held:
    """Input tokens reserved beyond the body's text: ``tokens`` (the context window when
    ``window`` is True), and ``why``, what they are for (shown in a 402)."""

    tokens: int = 0
    window: bool = False
    why: str = ""


NOTHING_HELD = Held()


def held_input(
    endpoint: Endpoint,
    payload: dict[str, Any],
    *,
    window: int | None,
    images: ImageRule | None,
) -> Held:
    """The input tokens ``payload`` may cost beyond its text, by the rules above.

    ``window`` is the model's context window and ``images`` its image rule (None: not
    configured). Raises BadRequest (``unbounded_input``) when an input needs the context window
    and the model has none."""
    field = endpoint.prompt_field
    details, unbounded = _walk(payload.get(field), field)
    for path in endpoint.held_fields:
        if _lookup(payload, path) is not None:
            unbounded = (path, path)
            break
    if details and unbounded is None and images is None:
        unbounded = ("image inputs", field)
    if unbounded is not None:
        what, param = unbounded
        if window is None:
            raise BadRequest(
                f"This model cannot take {what} through this gateway: the tokens it adds are "
                "not bounded by the request body and models.yaml sets no context_window for "
                "the model, so the call cannot be reserved safely.",
                param=param,
                code="unbounded_input",
            )
        return Held(window, window=True, why=what)
    if not details:
        return NOTHING_HELD
    assert images is not None
    count = len(details)
    return Held(
        sum(images.most(detail) for detail in details),
        why=f"{count} image{'s' if count > 1 else ''}",
    )


def _lookup(payload: dict[str, Any], path: str) -> Any:
    head, _, rest = path.partition(".")
    value = payload.get(head)
    for name in rest.split(".") if rest else ():
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _walk(root: Any, field: str) -> tuple[list[str | None], tuple[str, str] | None]:
    """Every image's detail under ``root``, and the first input that needs the context window
    (what it is, and the request field), if any.

    Iterative (a body may nest deeper than Python's recursion limit) and written for speed, as
    it runs on every call: orjson builds exact dicts and lists, so ``type(...) is`` holds."""
    details: list[str | None] = []
    unbounded: tuple[str, str] | None = None
    stack: list[Any] = [root] if isinstance(root, (dict, list)) else []
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is list:
            if node and type(node[0]) is int:
                continue  # a token array: ids, nothing typed inside
            for value in node:
                if type(value) is dict or type(value) is list:
                    push(value)
            continue
        if "type" in node or "audio" in node:
            kind = _kind(node)
            if kind == "image":
                details.append(_detail(node))
            elif kind is not None and unbounded is None:
                unbounded = (f"{kind} inputs ({node.get('type', 'audio')})", field)
        for value in node.values():
            if type(value) is dict or type(value) is list:
                push(value)
    return details, unbounded


def _kind(node: dict[str, Any]) -> InputKind | None:
    kind = node.get("type")
    if isinstance(kind, str):
        return None if kind in TEXT_TYPES else PART_KINDS.get(kind, "other")
    # A chat message replaying an earlier spoken answer names its audio by id.
    return "audio" if isinstance(node.get("audio"), dict) else None


def _detail(part: dict[str, Any]) -> str | None:
    # Responses: {"type": "input_image", "detail": ...}; chat: {"image_url": {"detail": ...}}.
    detail = part.get("detail")
    inner = part.get("image_url")
    if detail is None and isinstance(inner, dict):
        detail = inner.get("detail")
    return detail if isinstance(detail, str) else None
