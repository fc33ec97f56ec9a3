"""A whole (not streamed) upstream answer with a 2xx status, judged by its content (pure).

An answer is what it holds, whatever its label says: JSON is read for usage as before; an
OpenAI error object in place of the answer is an upstream error (billed nothing when nothing
was produced, a cut billed for what came when something was); an event stream sent although
none was asked for is metered as the stream it is; anything else (an HTML page, text, nothing)
is no answer at all: the caller gets a 502 in OpenAI's shape and nothing is billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.endpoints import UsageShape
from gateway.proxy.content import error_object, failure, kind_of, not_an_answer
from gateway.proxy.sse import StreamMeter
from gateway.proxy.usage import by_choice, output_pieces, with_searches
from gateway.usage_dialects import NormalizedUsage, normalize

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Whole:
    """What a whole answer came to: the usage record's ``status``, whether it is
    ``billable``, what to bill it from (``usage``, else ``texts`` per choice or ``meter``),
    and the reply to send (``http_status``, ``body``, ``content_type``)."""

    status: str
    billable: bool
    usage: NormalizedUsage | None
    texts: tuple[str, ...]
    meter: StreamMeter | None
    http_status: int
    body: bytes
    content_type: str


def judge(
    raw: bytes, *, status: int, content_type: str, shape: UsageShape, dialect: str | None
) -> Whole:
    """Judges the decoded body ``raw`` of a 2xx answer labelled ``content_type``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _not_json(raw, status, content_type, shape, dialect)
    # A Responses answer counts its web searches in its output, not its usage.
    usage = with_searches(normalize(obj, dialect=dialect), obj)
    error = error_object(obj)
    # The text is needed only when the output is not reported (it is then counted), or to
    # tell whether an error came after some.
    texts: list[str] = []
    if error is not None or usage is None or usage.output_tokens is None:
        texts = by_choice(output_pieces(obj))
    if error is not None and not any(texts):
        return _refused(error, status)
    if "json" not in content_type.lower():
        content_type = JSON  # it is JSON, whatever the label said
    verdict = "ok" if error is None else "upstream_cut"
    return Whole(verdict, True, usage, tuple(texts), None, status, raw, content_type)


def _not_json(
    raw: bytes, status: int, content_type: str, shape: UsageShape, dialect: str | None
) -> Whole:
    if kind_of(raw, at_end=True) == "sse":
        # Streamed although not asked for: metered as the stream it is, relayed as it came.
        meter = StreamMeter(shape, hide_usage_chunk=False, dialect=dialect)
        meter.feed(raw)
        meter.close()
        verdict, billable = meter.ending()
        if not billable and meter.error is not None:
            return _refused(meter.error, status)
        return Whole(verdict, billable, meter.usage, (), meter, status, raw, "text/event-stream")
    body = not_an_answer(status, content_type, raw)
    return Whole("upstream_error", False, None, (), None, 502, body, JSON)


def _refused(error: dict[str, Any], status: int) -> Whole:
    http_status, body = failure(error, status)
    return Whole("upstream_error", False, None, (), None, http_status, body, JSON)
