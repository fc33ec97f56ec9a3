"""One proxied call, top to bottom: authenticate, resolve, reserve, forward, relay, settle.

``handle`` reads in order: ``admit`` builds the call; ``relay`` forwards it
(``gateway.proxy.forward``) and returns what it came to, a frozen ``Outcome``
(``gateway.proxy.call``); ``settle`` (in ``finally``) prices that once and tells the
settlement listeners; a non-streamed answer is sent last, so its headers can carry what the
listeners had to say (the low-balance header). Settlement runs whatever happened after
admission (normal end, upstream error, client gone, process shutting down), so every admitted
call ends in exactly one usage record. Nothing raises once response headers are sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from gateway import quotes
from gateway.endpoints import Endpoint
from gateway.errors import GatewayError, KeyBudgetExceeded
from gateway.listeners import Header
from gateway.proxy.admission import reserve, write_cap
from gateway.proxy.anthropic_errors import reshape
from gateway.proxy.attribution import attribution
from gateway.proxy.billed import NOTHING, LocalCounts, billed_usage, usage_record
from gateway.proxy.call import INTERRUPTED, Call, Outcome
from gateway.proxy.forward import forward
from gateway.proxy.governance import budget_alert, check_caller, limit_headers, quotas_of
from gateway.proxy.request import caller_key, parse_object, passed_headers, read_body
from gateway.proxy.responses import send_body, send_error
from gateway.proxy.scrub import scrub, secret_for
from gateway.proxy.sse import StreamMeter
from gateway.proxy.stream_hold import StreamHold, shows_all_output
from gateway.records import UsageRecord
from gateway.request_ids import new_request_id
from gateway.routing import Plan
from gateway.server_tools import write_uses
from gateway.services import Services

log = logging.getLogger("gateway.pipeline")


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
    request_id = new_request_id()
    try:
        call = await admit(services, endpoint, scope, receive, request_id)
    except GatewayError as exc:
        services.metrics.refusal(exc.status)
        await send_error(send, exc, request_id, endpoint.error_types)
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
        if reply.status >= 400 and endpoint.error_types is not None:
            body = reshape(endpoint.error_types, reply.status, body)
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
    key, owner = await services.auth.caller(caller_key(headers, endpoint))
    body = await read_body(receive, headers, services.settings.max_body_bytes)
    payload = parse_object(body)
    # Disabled user, model lists (cached, no read): before the model is resolved, so a key
    # is told a model it may not use is not allowed, whatever state its provider is in.
    check_caller(key, owner, payload.get("model"))
    model = services.catalog.resolve(payload.get("model"), endpoint.path)
    # Claude Sonnet's 1M window is opened per request (README "models.yaml").
    model = model.with_betas(headers.get(b"anthropic-beta"))
    attributed = attribution(headers, payload)
    quotas = quotas_of(key, owner)
    # Every token covers at least one byte of the body, so the body length bounds the prompt
    # from above at no cost; tiktoken runs only when that bound does not fit the balance.
    quote = quotes.quote(model, endpoint, payload, len(body))
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
    try:
        quote, admission = await reserve(
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
            quotas=quotas,
        )
    except KeyBudgetExceeded as exc:
        alert = budget_alert(exc, quotas, key, owner)
        if alert is not None:
            services.alerts.notify(alert)
        raise
    write_cap(endpoint, payload, quote.output)
    write_uses(endpoint, payload)
    hold = None
    if quote.output_held is not None:
        hold = StreamHold(
            services.store,
            quote,
            model.price,
            user_id=key.user_id,
            request_id=request_id,
            ttl=settings.reservation_ttl,
            quotas=quotas,
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
        attribution=attributed,
        limit_headers=limit_headers(quotas, admission.quotas) if quotas else (),
        upstream_headers=passed_headers(headers, endpoint),
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
    grace = services.settings.disconnect_grace
    watcher = asyncio.create_task(_watch_disconnect(receive, task, meter, grace))
    try:
        return await forward(services.upstreams, call, send, meter)
    except asyncio.CancelledError:
        if not _client_left(watcher):
            return _metered("interrupted", meter, call.route)
        task.uncancel()
        decided = meter.decided() if meter is not None else None
        if meter is not None and decided is not None:
            # Gone after the answer ended (the openai SDKs close on [DONE], and raise on an
            # error event): judged as the stream itself, nothing was lost.
            status, billable = decided
            return Outcome(status, billable=billable, usage=meter.usage, meter=meter)
        return _metered("client_disconnected", meter, call.route)
    finally:
        watcher.cancel()


async def _watch_disconnect(
    receive: Receive, task: asyncio.Task[Any], meter: StreamMeter | None, grace: float
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if meter is not None and meter.error is None and meter.decided() is not None:
                # The answer is whole but its usage may still be on its way (it follows the
                # finish chunk): keep reading the upstream a little, sending nowhere (the
                # server drops writes to a gone client), so the call bills what it reports.
                await asyncio.sleep(grace)
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


# -- settlement --------------------------------------------------------------------------


async def settle(services: Services, call: Call, outcome: Outcome) -> Sequence[Header]:
    """Prices what happened, settles it once and tells the listeners; returns the headers
    they asked for. Raises only a cancellation (the response may be under way)."""
    billed = NOTHING
    if outcome.billable:
        local = LocalCounts(
            call.model,
            call.endpoint,
            call.payload,
            call.quote,
            lambda: _produced(outcome),
            lambda: outcome.meter.produced_searches() if outcome.meter else 0,
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
        attribution=call.attribution,
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
