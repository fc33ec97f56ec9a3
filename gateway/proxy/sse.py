"""Sans-IO server-sent-events relay: upstream bytes in, client bytes out, usage captured.

The stream is read by the HTML event-stream grammar (html.spec.whatwg.org, "Parsing an event
stream"): lines end with CRLF, LF or a lone CR; a blank line ends an event; a line starting
with a colon is a comment (keep-alives); ``data:`` takes one optional space after the colon
and several ``data`` lines join with LF; a line without a colon is a field with an empty
value. Two deliberate leniencies: an event the stream ends on without its blank line is
still read (the grammar drops it, but ``data: [DONE]`` or a last usage chunk sent that way is
the upstream's real end), and a BOM is skipped at the start of any event, not only the
stream's.

Bytes are forwarded per complete event, unchanged. Only events that can carry usage or report
an error are parsed: those holding one of the keys ``gateway.usage_dialects.normalize`` reads,
with an object or a number as its value (a ``"usage": null`` chunk is not parsed), an
``"error"`` object or message, or a ``"type"`` naming an error or a typed terminal event
(Responses, Anthropic's ``message_stop``).
Each usage report is normalized under the provider's dialect and folded into the ones before
with ``merge`` (final or cumulative reports, never deltas: the last figures win, however often
they come); a Responses terminal event's usage takes the count of the ``web_search_call``
items of its ``response.output`` (``gateway.proxy.usage.with_searches``), which usage omits.
The usage-only chunk the gateway asked for on the client's behalf is dropped when the client
did not ask for it. Every other event is kept by reference (no parse) so that, if
the stream ends without usage, what was produced can still be counted.

A stream has ``finished`` when its last event with data is a terminal one: ``[DONE]``; for
the Responses API ``response.completed``, ``.incomplete`` or ``.failed``; for Anthropic's
Messages API ``message_stop``; otherwise a chunk
with usage and no choice still open (the usage-only chunk, or usage on the last finish chunk),
or, checked once at the end, a last chunk whose every choice has a ``finish_reason``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.endpoints import UsageShape
from gateway.proxy.content import error_object
from gateway.proxy.usage import by_choice, output_pieces, search_calls, web_searches, with_searches
from gateway.usage_dialects import USAGE_KEYS, NormalizedUsage, merge, normalize

# What makes an event worth parsing, as JSON keys (an escaped quote inside a string never
# matches): a usage key the normalizer reads followed by an object (usage, usageMetadata,
# timings) or a count (Ollama, llama.cpp), the key and value possibly on two ``data`` lines;
# an error; a typed error or Responses terminal event. One alternation, one pass over a read:
# measured cheaper than substring finds per marker.
_KEYS = (*USAGE_KEYS, "error", "type")
_MARKER = re.compile(
    # The lookahead turns away at once the many quotes that open no key of interest.
    rb'"(?=['
    + "".join(sorted({k[0] for k in _KEYS})).encode()
    + rb"])(?:(?:"
    + b"|".join(re.escape(k.encode()) for k in USAGE_KEYS)
    + rb')"(?:\s|data:)*:(?:\s|data:)*[{0-9]'
    + rb'|error"\s*:\s*[{"]'
    + rb'|type"\s*:\s*"(?:error|message_stop|response\.(?:completed|incomplete|failed))")'
)
# A blank line: two line endings in a row, where CRLF is one ending (atomic groups, so "\r\n"
# is never read as CR then LF). Runs of blank lines are one separator.
_SEPARATOR = re.compile(rb"((?>\r\n|\n|\r)(?>\r\n|\n|\r)+)")
# Endings that close a blank line whatever comes next (not "\n\r": its CR may start a CRLF).
_EVENT_ENDS = (b"\n\n", b"\n\r\n", b"\r\r")
_BOM = b"\xef\xbb\xbf"
# The end of an OpenAI stream, matched as the openai SDKs match it (data starting with it).
_DONE = b"[DONE]"


class StreamMeter:
    """One stream's relay state: ``feed`` upstream bytes, forward what it returns, then forward
    what ``close`` returns. ``usage`` is what the stream reported (None until it does),
    ``error`` the first in-band error object (None if none), ``finished`` whether the stream
    ended on a terminal event (final once ``close`` has run)."""

    def __init__(
        self, shape: UsageShape, *, hide_usage_chunk: bool, dialect: str | None = None
    ) -> None:
        self._responses = shape.typed_events
        self._terminals = shape.terminal
        self._hide = hide_usage_chunk
        # The answering provider's (a fallback deployment's may differ: set before feeding).
        self.dialect = dialect
        self._tail = b""
        self._terminal = False
        self._dropped_cr = False
        self.events: list[bytes] = []
        self.usage: NormalizedUsage | None = None
        self.error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self._terminal

    def feed(self, data: bytes) -> bytes:
        """Returns the bytes to forward now (complete events only)."""
        if self._tail:
            # A blank line found now has at least its last byte in ``data``.
            start = len(self._tail) - 1
            buf = self._tail + data
        else:
            start, buf = 0, data
        if buf.endswith(_EVENT_ENDS):  # the usual read: whole events
            self._tail = b""
            return self._relay(buf)
        end = _last_boundary(buf, start, len(buf))
        if end < 0:
            self._tail = buf
            return b""
        if end == len(buf):
            self._tail = b""
            return self._relay(buf)
        self._tail = buf[end:]
        return self._relay(buf[:end])

    def close(self) -> bytes:
        """Whatever is left when the upstream ends (a last event without its blank line), with
        the blank line added when that event ended the stream: a client following the grammar
        discards an event the stream ends inside, and this one was read and billed (its usage,
        or its terminal event). A cut event stays as it came, for the client to discard."""
        tail, self._tail = self._tail, b""
        out = self._relay(tail) if tail else b""
        if not self._terminal and not self._responses:
            self._terminal = self._ended_on_finish()
        if self._terminal and out.strip(b"\r\n") and not out.endswith(_EVENT_ENDS):
            # (A tail of line endings only is the rest of a blank line split across reads.)
            # A trailing CR or LF already ends the last line: one more makes the blank line.
            out += out[-1:] if out.endswith((b"\r", b"\n")) else b"\n\n"
        return out

    def decided(self) -> tuple[str, bool] | None:
        """How the stream ended, as ``ending`` says, when that is known before its end (a
        client left): after an in-band error, a terminal event, or a chunk that closed every
        choice; None while the answer may still be coming. Parses one event, once."""
        if self.error is not None or self._terminal:
            return self.ending()
        if not self._responses and self._ended_on_finish():
            return "ok", True
        return None

    def ending(self) -> tuple[str, bool]:
        """How the stream ended, once closed: (usage record status, billable). An in-band error
        after produced text is a cut billed for what came; before any, nothing was served.
        Without a terminal event it was cut, whether the connection broke or simply closed;
        a connection that breaks after one lost nothing."""
        if self.error is not None:
            produced = any(self.produced_texts())
            return ("upstream_cut", True) if produced else ("upstream_error", False)
        return ("ok" if self._terminal else "upstream_cut"), True

    def produced_texts(self) -> list[str]:
        """The text generated so far, one string per choice (parses the kept events; only
        used when the output has to be counted)."""
        pieces = []
        for chunk in self.events:
            for data in payloads(chunk):
                pieces.extend(output_pieces(_load(data)))
        return by_choice(pieces)

    def last_sequence_number(self) -> int:
        """The ``sequence_number`` of the last Responses event kept (-1: none), for an event
        the gateway adds after it. Every Responses event carries one, so the last few reads
        tell; other streams have none, and are not parsed further back."""
        for chunk in reversed(self.events[-8:]):
            for data in reversed(list(payloads(chunk))):
                obj = _load(data)
                if isinstance(obj, dict) and type(obj.get("sequence_number")) is int:
                    return int(obj["sequence_number"])
        return -1

    def produced_searches(self) -> int:
        """The web searches the stream showed so far: Anthropic's ``server_tool_use`` blocks,
        and each Responses ``web_search_call`` item once, from the event that started it on
        (parses the kept events; only used when usage did not report them all)."""
        anthropic, calls = 0, set()
        for chunk in self.events:
            for data in payloads(chunk):
                obj = _load(data)
                anthropic += web_searches(obj)
                calls.update(search_calls(obj))
        return anthropic + len(calls)

    def _relay(self, chunk: bytes) -> bytes:
        if self._dropped_cr:
            # The LF of the CRLF that ended the event dropped last: it goes with that event.
            self._dropped_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        found = _MARKER.search(chunk)
        if found is None:
            self.events.append(chunk)
            self._note_plain(chunk)
            return chunk
        # Everything before the event holding the first marker passes untouched in one piece:
        # a read with hundreds of events is not split event by event to find the last one.
        start = max(_last_boundary(chunk, 0, found.start()), 0)
        out = bytearray()
        if start:
            head = chunk[:start]
            self.events.append(head)
            self._note_plain(head)
            out += head
        for event, separator in _split(chunk[start:] if start else chunk):
            data = _data(event)
            self.events.append(event)
            if data is not None and _MARKER.search(event) is not None:
                if not self._judge(_load(data)):
                    self._dropped_cr = separator.endswith(b"\r")  # matters only at the end
                    continue
            elif data is not None:
                self._terminal = data.startswith(_DONE)
            self._dropped_cr = False
            out += event
            out += separator
        return bytes(out)

    def _note_plain(self, chunk: bytes) -> None:
        # Events no marker selected end the stream only as [DONE]; any other data after a
        # terminal event means the stream went on. Checked only when either may apply.
        if self._terminal or _DONE in chunk:
            last = _last_data(chunk)
            if last is not None:
                self._terminal = last.startswith(_DONE)

    def _judge(self, obj: Any) -> bool:
        """Notes what a selected event says; False when it is not to be forwarded."""
        found = normalize(obj, dialect=self.dialect)
        if not isinstance(obj, dict):
            self.usage = merge(self.usage, found)
            self._terminal = False
            return True
        if self.error is None:
            self.error = error_object(obj)
        if self._responses:
            self._terminal = obj.get("type") in self._terminals
            if self._terminal:
                # The Responses API counts its web searches nowhere but in the output.
                found = with_searches(found, obj)
            self.usage = merge(self.usage, found)
            return True
        self.usage = merge(self.usage, found)
        self._terminal = found is not None and _choices_done(obj)
        return not (found is not None and self._hide and obj.get("choices") == [])

    def _ended_on_finish(self) -> bool:
        # Once per stream, at its end: an upstream that sends no [DONE] (and no usage) still
        # ended its answer if the last chunk closed every choice it holds.
        for chunk in reversed(self.events):
            last = _last_data(chunk)
            if last is not None:
                obj = _load(last)
                return isinstance(obj, dict) and bool(obj.get("choices")) and _choices_done(obj)
        return False


def payloads(chunk: bytes) -> Iterator[bytes]:
    """The data of each event in ``chunk`` (whole events, as ``StreamMeter.feed`` returns
    them), lines joined; events without data and the ``[DONE]`` sentinel are skipped."""
    for event, _ in _split(chunk):
        data = _data(event)
        if data and not data.startswith(_DONE):
            yield data


def _choices_done(obj: dict[str, Any]) -> bool:
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return True
    return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


def _last_boundary(buf: bytes, start: int, stop: int) -> int:
    """The end of the last blank line in ``buf[start:stop]``, -1 if none. Line endings are CRLF,
    LF or CR, so a blank line is "\\n\\n", "\\r\\r" or "\\n\\r" (inside "\\r\\n\\r\\n" too); a CR
    ending it takes the LF after it, when that has come, as its CRLF."""
    i = max(buf.rfind(b"\n\n", start, stop), buf.rfind(b"\r\r", start, stop))
    i = max(i, buf.rfind(b"\n\r", start, stop))
    if i < 0:
        return -1
    end = i + 2
    if buf[end - 1 : end] == b"\r" and buf[end : end + 1] == b"\n":
        end += 1
    return end


def _split(chunk: bytes) -> list[tuple[bytes, bytes]]:
    """Events with their separators, so forwarding keeps the bytes exactly."""
    pieces = _SEPARATOR.split(chunk)
    # split() alternates text and captured separators: [event, sep, event, sep, ..., event]
    out = [(pieces[i], pieces[i + 1]) for i in range(0, len(pieces) - 1, 2)]
    first = out[0][0] if out else pieces[-1]
    if first[:1] in (b"\r", b"\n"):
        # The LF of a CRLF whose CR ended the read before (or a lone line ending): it belongs
        # to what came before, and must stay when the event after it is dropped.
        lead = len(first) - len(first.lstrip(b"\r\n"))
        if out:
            out[0] = (first[lead:], out[0][1])
        else:
            pieces[-1] = first[lead:]
        out.insert(0, (b"", first[:lead]))
    if pieces[-1]:
        out.append((pieces[-1], b""))
    return out


def _data(event: bytes) -> bytes | None:
    """The data of one event: its ``data`` field values joined with LF; None when it has no
    ``data`` field (a comment, a keep-alive, an ``event:`` line alone)."""
    if event.startswith(_BOM):
        event = event[len(_BOM) :]
    if b"data" not in event:
        return None
    values = []
    for line in event.splitlines():  # bytes split on CRLF, LF and CR only
        if line.startswith(b"data"):
            if len(line) == 4:
                values.append(b"")
            elif line[4:5] == b":":
                values.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(values) if values else None


def _last_data(chunk: bytes) -> bytes | None:
    for event, _ in reversed(_split(chunk)):
        data = _data(event)
        if data is not None:
            return data
    return None


def _load(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
