"""``Sender``: delivers the outbox, at least once, from every gateway process.

Started and stopped with the app (gateway.services). Each round it writes the alerts
buffered by ``Alerts.notify`` to the outbox, claims up to ``BATCH`` due rows (a lease in the
database: no other process sends a row while it is held, and a crashed sender's rows fall due
again when the lease ends) and POSTs each, signed (gateway.alerts.signature), with httpx.

A 2xx answer is delivered. Anything else (another status, a timeout, a refused connection)
is retried after ``backoff * 2**(attempts - 1)`` seconds, at most ``backoff_max``; the
``max_attempts``-th failure marks the row ``failed``. With the defaults (30 s, 1 h, 12): 30 s,
1, 2, 4, 8, 16, 32 min, then hourly: the last attempt about 5 h after the first.

A round runs when an alert was just written in this process, else every ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx

from gateway.alerts import signature
from gateway.alerts.outbox import Alerts
from gateway.ledger.support_ports import Webhooks
from gateway.records import WebhookDelivery, utcnow
from gateway.settings import Settings

log = logging.getLogger("gateway.alerts")
BATCH = 20


@dataclass(frozen=True)
class Schedule:
    secret: str
    timeout: float = 10.0
    backoff: float = 30.0
    backoff_max: float = 3600.0
    max_attempts: int = 12
    poll: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Schedule:
        return cls(
            secret=settings.alert_webhook_secret or "",
            timeout=settings.alert_webhook_timeout,
            backoff=settings.alert_webhook_backoff,
            backoff_max=settings.alert_webhook_backoff_max,
            max_attempts=settings.alert_webhook_max_attempts,
            poll=settings.alert_webhook_poll,
        )

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones."""
        return float(min(self.backoff * 2 ** (attempts - 1), self.backoff_max))

    @property
    def lease(self) -> float:
        # Longer than any attempt can take, so a live sender always finishes under its lease.
        return self.timeout * 2 + 30


class Sender:
    def __init__(self, alerts: Alerts, webhooks: Webhooks, schedule: Schedule) -> None:
        self._alerts = alerts
        self._webhooks = webhooks
        self._schedule = schedule
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        if not self._alerts.enabled:
            return
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=self._schedule.timeout,
            headers={"user-agent": "metering-gateway-alerts/1"},
        )
        self._task = asyncio.create_task(self._run(), name="alert-sender")

    async def stop(self) -> None:
        """Cooperative: the round under way finishes (each send is bounded by the timeout),
        then what ``notify`` buffered is written to the outbox for the next start."""
        if self._task is not None:
            self._stopping.set()
            self._alerts.wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=self._schedule.timeout + 5)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({self._task}, timeout=5.0)
            self._task = None
        try:
            await self._alerts.flush()
        except Exception as exc:
            log.error("%d buffered alerts lost at stop: %s", self._alerts.buffered, exc)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._alerts.wake.clear()
            sent = 0
            try:
                await self._alerts.flush()
                sent = await self.run_once()
                self.last_error = None
            except Exception as exc:  # the database down: the next round tries again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("alert round failed: %s", self.last_error)
            if sent == BATCH:
                continue  # more may be due at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._alerts.wake.wait(), self._schedule.poll)

    async def run_once(self) -> int:
        """Claims the due rows and sends them; returns how many were claimed."""
        due = await self._webhooks.claim_due(limit=BATCH, lease=self._schedule.lease)
        if due:
            await asyncio.gather(*(self._send(d) for d in due))
        return len(due)

    async def _send(self, delivery: WebhookDelivery) -> None:
        assert delivery.claim is not None  # claim_due sets it
        url = self._alerts.urls.get(delivery.endpoint_hash)
        status: int | None = None
        error: str | None = None
        if url is None:
            error = "endpoint no longer configured (GATEWAY_ALERT_WEBHOOK_URLS)"
        else:
            status, error = await self._post(url, delivery)
        attempts = delivery.attempts + 1
        now = utcnow()
        if error is None:
            outcome, next_at = "delivered", now
        elif url is None or attempts >= self._schedule.max_attempts:
            outcome, next_at = "failed", now
        else:
            outcome = "pending"
            next_at = now + timedelta(seconds=self._schedule.delay(attempts))
        if outcome != "delivered":
            log.warning(
                "alert %s to %s: attempt %d failed (%s)%s",
                delivery.event_id,
                delivery.endpoint,
                attempts,
                error,
                "; giving up" if outcome == "failed" else "",
                extra={
                    "event": "alert_delivery_failed",
                    "event_id": delivery.event_id,
                    "type": delivery.type,
                    "endpoint": delivery.endpoint,
                    "attempts": attempts,
                    "status": outcome,
                },
            )
        await self._webhooks.finish_delivery(
            delivery.id,
            claim=delivery.claim,
            status=outcome,
            next_attempt_at=next_at,
            http_status=status,
            error=error,
        )

    async def _post(self, url: str, delivery: WebhookDelivery) -> tuple[int | None, str | None]:
        """(HTTP status, error or None when delivered)."""
        assert self._client is not None
        body = delivery.payload.encode()
        try:
            response = await self._client.post(
                url,
                content=body,
                headers={
                    "content-type": "application/json",
                    signature.HEADER: signature.sign(self._schedule.secret, body),
                    "x-gateway-event-id": delivery.event_id,
                    "x-gateway-event-type": delivery.type,
                },
            )
        except httpx.HTTPError as exc:
            # The type only: httpx's messages may quote the URL, which may carry a token.
            return None, f"{type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"
