"""One proxied call, top to bottom: authenticate, resolve, reserve, forward, relay, settle.

``handle`` reads in order: ``admit`` builds the call; ``relay`` forwards it and returns what
it came to, a frozen ``Outcome``; ``settle`` (in ``finally``) prices that once and tells the
settlement listeners; a non-streamed answer is sent last, so its headers can carry what the
listeners had to say (the low-balance header). Settlement runs whatever happened after
admission (normal end, upstream error, client gone, process shutting down), so every admitted
call ends in exactly one usage record. Nothing raises once response headers are sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from gateway import pricing, routing
from gateway.catalog import Model
from gateway.endpoints import Endpoint
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.listeners import Header
from gateway.pricing import Quote
from gateway.proxy.admission import reserve, write_cap
from gateway.proxy.billed import NOTHING, LocalCounts, billed_usage, usage_record
from gateway.proxy.body import UpstreamBody
from gateway.proxy.content import upstream_error_body
from gateway.proxy.outbound import outbound
from gateway.proxy.refusals import passed_on, withdraw_stream_options
from gateway.proxy.relayed_headers import relayed_headers
from gateway.proxy.request import header, parse_object, read_body
from gateway.proxy.responses import send_body, send_error
from gateway.proxy.scrub import scrub, secret_for
from gateway.proxy.sse import StreamMeter
from gateway.proxy.stream_hold import StreamHold, shows_all_output
from gateway.proxy.whole import judge
from gateway.records import ApiKey, UsageRecord
from gateway.routing import Plan
from gateway.services import Services
from gateway.usage_dialects import NormalizedUsage

log = logging.getLogger("gateway.pipeline")


@dataclass(slots=True)
class Call:
    request_id: str
    endpoint: Endpoint
    started: float
    key: ApiKey
    model: Model
    quote: Quote
    # The request as forwarded (upstream model name, stream_options); encoded when sent.
    payload: dict[str, Any]
    stream: bool
    hide_usage_chunk: bool
    # Which deployment to try now, and after it (gateway.routing); the last one tried is the
    # one whose answer the call got.
    route: Plan
    # A stream reserved for a slice of its cap, grown as it produces (None: the whole cap).
    hold: StreamHold | None = None

    @property
    def reserved(self) -> int:
        """What the call holds now, nano-USD."""
        return self.hold.reserve if self.hold is not None else self.quote.reserve


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer, held back until the call is settled."""

    status: int
    body: bytes
    content_type: str
    # The upstream's headers the caller gets (gateway.proxy.relayed_headers).
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a relayed call came to, as settlement prices it.

    ``usage`` is what the upstream reported (normalized); what it leaves unknown is counted
    from the prompt and the produced text (``texts``, one per choice, of a whole answer, or
    what ``meter`` saw of a stream). ``billable`` is False when the upstream served nothing.
    ``reply`` is the answer still to send (None when it went out already: a stream, or
    nothing to send).
    """

    status: str
    billable: bool = True
    usage: NormalizedUsage | None = None
    texts: tuple[str, ...] = ()
    meter: StreamMeter | None = None
    reply: Reply | None = None


# What settles when relay raises instead of returning (a bug): the prompt, nothing produced.
INTERRUPTED = Outcome("interrupted")


class ProxyEndpoint:
    """An ASGI app for one /v1 endpoint (mounted by app.py)."""

    def __init__(self, services: Services, endpoint: Endpoint) -> None:
        self.services = services
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await handle(self.services, self.endpoint, scope, receive, send)


async def handle(
    services: Services, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    # Time-ordered ids keep usage-table inserts at the right edge of the index.
    request_id = f"req_{time.time_ns():016x}{os.urandom(8).hex()}"
    try:
        call = await admit(services, endpoint, scope, receive, request_id)
    except GatewayError as exc:
        services.metrics.refusal(exc.status)
        await send_error(send, exc, request_id)
        return
    services.call_started()
    outcome = INTERRUPTED
    try:
        outcome = await relay(services, call, receive, send)
    finally:
        headers = await settle(services, call, outcome)
        services.call_ended()
    reply = outcome.reply
    if reply is not None:
        body = scrub(secret_for(call.route.deployment.provider.api_key), reply.body)
        extra = [*reply.headers, *headers]
        await send_body(send, reply.status, body, reply.content_type, request_id, extra)
    if outcome.status == "interrupted":
        raise asyncio.CancelledError  # shutdown or server cancel: settled above, now let it go


# -- admission ---------------------------------------------------------------------------


async def admit(
    services: Services, endpoint: Endpoint, scope: Scope, receive: Receive, request_id: str
) -> Call:
    started = time.perf_counter()
    headers = dict(scope["headers"])
    key = await services.auth.authenticate(header(headers, b"authorization"))
    body = await read_body(receive, headers, services.settings.max_body_bytes)
    payload = parse_object(body)
    model = services.catalog.resolve(payload.get("model"), endpoint.path)
    # Every token covers at least one byte of the body, so the body length bounds the prompt
    # from above at no cost; tiktoken runs only when that bound does not fit the balance.
    quote = pricing.quote(model, endpoint, payload, len(body))
    stream = endpoint.streams and payload.get("stream") is True
    payload["model"] = model.upstream_model
    hide_usage = False
    if stream and endpoint.include_usage and model.provider.stream_options:
        options = payload.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        hide_usage = options.get("include_usage") is not True
        options["include_usage"] = True  # so the stream tells us what to bill
        payload["stream_options"] = options
    # A call asked for without a cap may be forwarded with the cap the balance covers
    # (GATEWAY_UNCAPPED_CALLS); a stream then holds a slice of it at a time.
    settings = services.settings
    quote = await reserve(
        services.store,
        services.settings.reservation_ttl,
        quote,
        user_id=key.user_id,
        request_id=request_id,
        model=model,
        endpoint=endpoint,
        payload=payload,
        may_fit=settings.uncapped_calls == "fit",
        stream_slice=(
            settings.stream_hold_tokens
            if stream and shows_all_output(payload, hidden_reasoning=model.hidden_reasoning)
            else None
        ),
    )
    write_cap(endpoint, payload, quote.output)
    hold = None
    if quote.output_held is not None:
        hold = StreamHold(
            services.store,
            quote,
            model.price,
            user_id=key.user_id,
            request_id=request_id,
            ttl=settings.reservation_ttl,
        )
    return Call(
        request_id=request_id,
        endpoint=endpoint,
        started=started,
        key=key,
        model=model,
        quote=quote,
        payload=payload,
        stream=stream,
        hide_usage_chunk=hide_usage,
        route=services.router.plan(model),
        hold=hold,
    )


# -- forwarding and relaying -------------------------------------------------------------


async def relay(services: Services, call: Call, receive: Receive, send: Send) -> Outcome:
    """Forwards the call and relays or holds its answer; returns what it came to.

    Never raises for a cancellation: the client leaving ends the call as
    ``client_disconnected``; any other cancellation (shutdown) as ``interrupted``, which
    ``handle`` raises again once the call is settled.
    """
    task = asyncio.current_task()
    assert task is not None
    meter = (
        StreamMeter(
            call.endpoint.usage,
            hide_usage_chunk=call.hide_usage_chunk,
            dialect=call.model.provider.dialect,
        )
        if call.stream
        else None
    )
    watcher = asyncio.create_task(_watch_disconnect(receive, task))
    try:
        return await _forward(services, call, send, meter)
    except asyncio.CancelledError:
        if not _client_left(watcher):
            return _metered("interrupted", meter, call.route)
        task.uncancel()
        if meter is not None and meter.finished:
            # Gone after the stream's end (the openai SDKs close on [DONE]): nothing was lost.
            status, billable = meter.ending()
            return Outcome(status, billable=billable, usage=meter.usage, meter=meter)
        return _metered("client_disconnected", meter, call.route)
    finally:
        watcher.cancel()


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return


def _client_left(watcher: asyncio.Task[None]) -> bool:
    # The watcher finishes only by seeing the disconnect; it is cancelled in every other case.
    return watcher.done() and not watcher.cancelled() and watcher.exception() is None


def _metered(status: str, meter: StreamMeter | None, route: Plan | None = None) -> Outcome:
    """The outcome of a stream call that ended with ``status``, billed as its meter saw it;
    nothing when it ended waiting between attempts (no upstream was working on it)."""
    if route is not None and route.waiting:
        return Outcome(status, billable=False)
    if meter is None:
        return Outcome(status)
    return Outcome(status, usage=meter.usage, meter=meter)


async def _forward(
    services: Services, call: Call, send: Send, meter: StreamMeter | None
) -> Outcome:
    accept = "text/event-stream" if call.stream else "application/json"
    route = call.route
    while True:  # until an answer is the call's: gateway.routing says what to try next
        call.payload["model"] = route.deployment.upstream_model
        try:
            response = await services.upstreams.post(
                route.deployment.provider,
                call.endpoint.path,
                orjson.dumps(call.payload),
                request_id=call.request_id,
                accept=accept,
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
                return await _forward(services, call, send, meter)  # once: the option is gone
            code, raw, content_type = passed_on(provider, code, raw, content_type)
            error = upstream_error_body(code, content_type, raw)
            reply = Reply(code, error, "application/json", relayed)
            return Outcome("upstream_error", billable=False, reply=reply)
        # A stream by its content, not its label (which relays get wrong both ways).
        if meter is not None and await body.sniff() == "sse":
            if not content_type.startswith("text/event-stream"):
                content_type = "text/event-stream"
            send = outbound(send, relayed, secret)
            return await _relay_stream(call, body, send, meter, content_type)
        return _with_headers(await _relay_body(call, body, content_type), relayed)


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
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    status, billable = meter.ending()
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
    refusal = hold.refusal(call.endpoint.usage.typed_events)
    await send({"type": "http.response.body", "body": refusal, "more_body": False})
    return Outcome("credit_exhausted", usage=meter.usage, texts=tuple(hold.texts()))


# -- settlement --------------------------------------------------------------------------


async def settle(services: Services, call: Call, outcome: Outcome) -> Sequence[Header]:
    """Prices what happened, settles it once and tells the listeners; returns the headers
    they asked for. Raises only a cancellation (the response may be under way)."""
    billed = NOTHING
    if outcome.billable:
        local = LocalCounts(
            call.model, call.endpoint, call.payload, call.quote, lambda: _produced(outcome)
        )
        billed = billed_usage(
            outcome.usage,
            local,
            produces_output=bool(call.endpoint.cap_fields),
            complete=outcome.status == "ok",
        )
    record = usage_record(
        billed,
        call.model,
        request_id=call.request_id,
        user_id=call.key.user_id,
        key_id=call.key.id,
        endpoint=call.endpoint.path,
        status=outcome.status,
        latency_ms=int((time.perf_counter() - call.started) * 1000),
        reserved=call.reserved,
        deployment=call.route.deployment,
    )
    balance: int | None = None
    try:
        # The in-process store settles without suspending; the Redis one shields itself.
        balance = await services.store.settle(record)
    except BaseException as exc:  # never lose the record silently: it goes to the log whole
        log.error(
            "settlement failed for %s: %r; record=%s",
            call.request_id,
            exc,
            orjson.dumps(record.to_dict()).decode(),
        )
        if isinstance(exc, asyncio.CancelledError):
            raise
    finally:
        headers = _publish(services, record, balance)
    return headers


def _produced(outcome: Outcome) -> Sequence[str]:
    return outcome.meter.produced_texts() if outcome.meter else outcome.texts


def _publish(services: Services, record: UsageRecord, balance: int | None) -> Sequence[Header]:
    headers: Sequence[Header] = ()
    for listener in services.on_settled:
        try:
            extra = listener(record, balance)
        except Exception:
            log.exception("settlement listener %r failed for %s", listener, record.request_id)
            continue
        if extra:
            headers = [*headers, *extra]
    return headers
