"""Forwarding one admitted call and relaying its answer: the attempts (``gateway.routing``
says which deployment next), then the answer by its content: an error passed on in OpenAI's
shape, a stream relayed event by event (metered, scrubbed, its hold grown), or a whole answer
held back for settlement. Returns what the call came to, an ``Outcome``."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import orjson
from starlette.types import Send

from gateway import routing
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.listeners import Header
from gateway.proxy.body import UpstreamBody
from gateway.proxy.call import Call, Outcome, Reply
from gateway.proxy.content import upstream_error_body
from gateway.proxy.governance import own_limits
from gateway.proxy.outbound import outbound
from gateway.proxy.refusals import passed_on, withdraw_stream_options
from gateway.proxy.relayed_headers import relayed_headers
from gateway.proxy.scrub import secret_for
from gateway.proxy.sse import StreamMeter
from gateway.proxy.stream_errors import UPSTREAM_CUT, stream_error
from gateway.proxy.stream_hold import StreamHold
from gateway.proxy.whole import judge
from gateway.upstream import Upstreams


async def forward(
    upstreams: Upstreams, call: Call, send: Send, meter: StreamMeter | None
) -> Outcome:
    """Sends ``call`` upstream until an answer is its own, and relays or holds that answer
    (see the module). ``meter`` is the stream's, None for a whole answer. Raises only a
    cancellation (the caller's ``relay`` turns it into an outcome)."""
    accept = "text/event-stream" if call.stream else "application/json"
    route = call.route
    while True:  # until an answer is the call's: gateway.routing says what to try next
        call.payload["model"] = route.deployment.upstream_model
        try:
            response = await upstreams.post(
                route.deployment.provider,
                call.endpoint.path,
                orjson.dumps(call.payload),
                request_id=call.request_id,
                accept=accept,
                extra=call.upstream_headers,
            )
        except UpstreamError as exc:
            if (wait := route.failed(routing.failure_of(exc))) is None:
                timeout = isinstance(exc, UpstreamTimeout)
                status = "upstream_timeout" if timeout else "upstream_unreachable"
                return Outcome(status, billable=False, reply=_error_reply(exc))
        else:
            failure = routing.failure(response.status, response.headers)
            if failure is None:
                route.answered()
                break
            if (wait := route.failed(failure)) is None:
                break  # relayed as the upstream sent it, at once
            response.release()
        await route.pause(wait)
    provider = route.deployment.provider  # the one that answered: its key, its dialect
    if meter is not None:
        meter.dialect = provider.dialect
    async with response:
        secret = secret_for(provider.api_key)
        relayed = relayed_headers(response.raw_headers, secret)
        content_type = response.headers.get("Content-Type", "application/json")
        try:
            body = UpstreamBody(response)  # decodes any Content-Encoding
        except UpstreamError as exc:
            return Outcome("upstream_error", billable=False, reply=_error_reply(exc))
        if response.status >= 400:
            # The provider refused or failed: its answer in OpenAI's shape, nothing charged.
            raw = await _read_or_empty(body)
            code = response.status
            if withdraw_stream_options(provider, call.payload, call.hide_usage_chunk, code, raw):
                return await forward(upstreams, call, send, meter)  # once: the option is gone
            code, raw, content_type = passed_on(provider, code, raw, content_type)
            error = upstream_error_body(code, content_type, raw)
            reply = Reply(code, error, "application/json", relayed)
            return Outcome("upstream_error", billable=False, reply=reply)
        # A stream by its content, not its label (which relays get wrong both ways).
        if meter is not None and await body.sniff() == "sse":
            if not content_type.startswith("text/event-stream"):
                content_type = "text/event-stream"
            send = outbound(send, own_limits(relayed, call.limit_headers), secret)
            return await _relay_stream(call, body, send, meter, content_type)
        outcome = await _relay_body(call, body, content_type)
        if outcome.reply is not None and outcome.reply.status < 400:
            relayed = own_limits(relayed, call.limit_headers)
        return _with_headers(outcome, relayed)


def _with_headers(outcome: Outcome, headers: tuple[Header, ...]) -> Outcome:
    if outcome.reply is None or not headers:
        return outcome
    return replace(outcome, reply=replace(outcome.reply, headers=headers))


def _error_reply(exc: GatewayError) -> Reply:
    return Reply(exc.status, exc.body(), "application/json")


async def _read_or_empty(body: UpstreamBody) -> bytes:
    try:
        return await body.read()
    except (aiohttp.ClientError, TimeoutError):
        return b""


async def _relay_body(call: Call, response: UpstreamBody, content_type: str) -> Outcome:
    """Reads a whole answer and hands it back unsent: its headers wait for settlement."""
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = (
            UpstreamTimeout("upstream timed out mid-answer")
            if isinstance(exc, TimeoutError)
            else UpstreamError("upstream broke off its answer")
        )
        return Outcome("upstream_cut", reply=_error_reply(error))
    shape, dialect = call.endpoint.usage, call.route.deployment.provider.dialect
    whole = judge(
        body, status=response.status, content_type=content_type, shape=shape, dialect=dialect
    )
    reply = Reply(whole.http_status, whole.body, whole.content_type)
    return Outcome(
        whole.status,
        billable=whole.billable,
        usage=whole.usage,
        texts=whole.texts,
        meter=whole.meter,
        reply=reply,
    )


async def _relay_stream(
    call: Call,
    response: UpstreamBody,
    send: Send,
    meter: StreamMeter,
    content_type: str,
) -> Outcome:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"cache-control", b"no-cache"),
                (b"x-request-id", call.request_id.encode()),
            ],
        }
    )
    hold = call.hold
    try:
        async for data in response.chunks():
            out = meter.feed(data)
            if out and hold is not None and not await hold.cover(out):
                return await _end_uncovered(call, hold, response, send, meter)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
    except (aiohttp.ClientError, TimeoutError):
        pass  # a cut: the meter tells, from the events that came
    tail = meter.close()
    if tail and hold is not None and not await hold.cover(tail):
        return await _end_uncovered(call, hold, response, send, meter)
    status, billable = meter.ending()
    if status == "upstream_cut" and meter.error is None:
        # The upstream went away mid-answer. Its last event, cut, would be discarded by the
        # client anyway (the grammar drops an event the stream ends inside); an error event
        # in the endpoint's shape takes its place, so the client's SDK raises instead of
        # returning a truncated answer as whole.
        if not tail.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
            tail = b""
        tail += stream_error(call.endpoint, UPSTREAM_CUT, meter.last_sequence_number() + 1)
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    return Outcome(status, billable=billable, usage=meter.usage, meter=meter)


async def _end_uncovered(
    call: Call,
    hold: StreamHold,
    response: UpstreamBody,
    send: Send,
    meter: StreamMeter,
) -> Outcome:
    """Ends a stream whose next piece the balance does not cover: that piece is not sent, the
    upstream connection is closed, and what was sent is billed (``hold.texts``)."""
    response.close()
    refusal = hold.refusal(call.endpoint)
    await send({"type": "http.response.body", "body": refusal, "more_body": False})
    return Outcome("credit_exhausted", usage=meter.usage, texts=tuple(hold.texts()))
