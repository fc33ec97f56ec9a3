"""What an upstream answer is, judged by its bytes rather than its label (pure).

``kind_of`` tells an event stream from JSON or anything else by its first bytes: a relay that
streams a valid event stream labelled ``text/plain`` or ``application/json``
(containers/ramalama#2837, vllm-project/vllm-ascend#6985) is still a stream, and an error
object labelled ``text/event-stream`` is still a JSON error. ``error_object`` finds an OpenAI
error object where an answer was expected (a whole 200 body, or one stream event: OpenRouter
and others report a failure in-band after the 200 is sent). ``upstream_error_body`` and
``not_an_answer`` give the caller OpenAI's error shape (``{"error": {"message", "type",
"code", "param"}}``, platform.openai.com "Error codes") whatever came back: an error object
passes unchanged, and an HTML page from a CDN or plain text is described with a short excerpt,
from which anything that looks like a credential is cut.
"""

from __future__ import annotations

import html
import re
from typing import Any, Literal

import orjson

from gateway.errors import error_body

Kind = Literal["sse", "json", "other"]

_BOM = b"\xef\xbb\xbf"
# HTML event-stream grammar (html.spec.whatwg.org, "Parsing an event stream"): a stream starts
# with an optional BOM, then lines that are blank, comments (":...") or fields; only these
# four field names mean anything.
_SSE_FIELDS = (b"data", b"event", b"id", b"retry")
_LINE_END = re.compile(rb"[:\r\n]")
_EXCERPT_CHARS = 200
_TITLE = re.compile(rb"<(title|h1)\b[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(rb"<script\b.*?</script\s*>|<style\b.*?</style\s*>|<[^>]*>", re.I | re.S)
# Whatever could be a key (an API key whole or masked as OpenAI does, a token, a signature): a
# run of 16 or more key characters holding a digit or a mask, or any sk-/pk-/rk- prefixed word.
_SECRET = re.compile(
    r"\b(?:[sprk]k|sess|key)[-_][\w\-*.]{4,}|[\w\-*.+/=]*[\d*][\w\-*.+/=]*", re.IGNORECASE
)


def kind_of(head: bytes, *, at_end: bool) -> Kind | None:
    """What an answer starting with ``head`` is; None while more bytes are needed to tell
    (``at_end``: ``head`` is the whole answer). Leading blank lines are skipped as the grammar
    does; an empty answer is ``other``."""
    if not at_end and len(head) < len(_BOM) and _BOM.startswith(head):
        return None
    text = (head[len(_BOM) :] if head.startswith(_BOM) else head).lstrip(b" \t\r\n")
    if not text:
        return "other" if at_end else None
    first = text[:1]
    if first == b":":
        return "sse"
    if first in (b"{", b"["):
        return "json"
    end = _LINE_END.search(text)
    if end is None:
        if not at_end:
            return None if any(f.startswith(text) for f in _SSE_FIELDS) else "other"
        name = text
    else:
        name = text[: end.start()]
    return "sse" if name in _SSE_FIELDS else "other"


def error_object(obj: Any) -> dict[str, Any] | None:
    """The error ``obj`` reports in place of an answer, as an OpenAI error object: a top-level
    ``error`` object or message (OpenAI, OpenRouter, Anthropic's ``{"type": "error", ...}``), or
    a Responses ``error`` / ``response.failed`` event. None when ``obj`` reports none."""
    if not isinstance(obj, dict):
        return None
    error = obj.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str) and error:
        return {"message": error}
    kind = obj.get("type")
    if kind == "error":
        return obj
    if kind == "response.failed":
        response = obj.get("response")
        failed = response.get("error") if isinstance(response, dict) else None
        return failed if isinstance(failed, dict) else {"message": "the response failed"}
    return None


def failure(error: dict[str, Any], status: int) -> tuple[int, bytes]:
    """The caller's answer for an upstream ``error`` object that came inside a 2xx: the
    upstream's own HTTP-like ``code`` when it gives one (OpenRouter does), else 502; the
    upstream's fields kept, the missing ones of OpenAI's shape added."""
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        status = code
    elif status < 400:
        status = 502
    message = error.get("message")
    body = error_body(
        message if isinstance(message, str) and message else "the upstream reported an error",
        _text(error.get("type")) or "upstream_error",
        _text(code),
        _text(error.get("param")),
    )
    return status, body


def upstream_error_body(status: int, content_type: str, body: bytes) -> bytes:
    """The error body to send for an upstream answer with an error ``status`` (4xx/5xx):
    unchanged when it is an OpenAI error object, else one that says what came back."""
    obj = _json(body)
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        return body
    return error_body(
        f"the upstream answered HTTP {status} with {describe(content_type, body, obj)}",
        "upstream_error",
        "upstream_error",
    )


def not_an_answer(status: int, content_type: str, body: bytes) -> bytes:
    """The error body for a 2xx whose content is no answer (a captive portal's or a misrouted
    base URL's HTML page, text, nothing): sent with 502, as nothing usable came back."""
    return error_body(
        f"the upstream answered HTTP {status} with {describe(content_type, body, _json(body))}, "
        "not an API answer",
        "upstream_error",
        "bad_upstream_answer",
    )


def describe(content_type: str, body: bytes, obj: Any = None) -> str:
    """What ``body`` is, with a short excerpt: 'an HTML page: "502: Bad gateway"'."""
    if not body.strip():
        return "an empty body"
    if isinstance(obj, dict):
        for key in ("message", "detail", "error", "msg", "title"):
            if isinstance(obj.get(key), str) and obj[key].strip():
                return f'JSON without an error object: "{_excerpt(obj[key].encode())}"'
        return "JSON without an error object"
    label = content_type.split(";")[0].strip().lower() or "unlabelled content"
    head = body.lstrip()[:64].lower()
    if "html" in label or head.startswith((b"<!doctype html", b"<html")):
        found = _TITLE.search(body)
        text = found.group(2) if found else _TAGS.sub(b" ", body)
        return f'an HTML page: "{_excerpt(text, markup=True)}"'
    return f'{label}: "{_excerpt(body)}"'


def _excerpt(raw: bytes, *, markup: bool = False) -> str:
    text = raw[: _EXCERPT_CHARS * 8].decode("utf-8", "replace")
    if markup:
        text = html.unescape(text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    text = _SECRET.sub(_redact, text)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


def _redact(match: re.Match[str]) -> str:
    word = match.group(0)
    if len(word) >= 16 or word[:3].lower() in ("sk-", "pk-", "rk-", "sk_", "pk_", "rk_"):
        return "[redacted]"
    return word


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value) if isinstance(value, (str, int)) else None
