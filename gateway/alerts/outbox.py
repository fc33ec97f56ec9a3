"""``Alerts``: turns alert events into outbox rows for the configured endpoints.

Three ways in, by where the event is seen:

- inside a ledger transaction: ``write_alert(tx, alerts.address(event))`` (gateway.ledger
  .webhooks), or a repository method's ``alerts=`` argument, so the alert commits with the
  change that caused it;
- in async code after the fact: ``await alerts.record(event)``;
- on the hot path (synchronous, no I/O): ``alerts.notify(event)`` buffers it in memory and
  wakes the sender, which writes it to the outbox before its next round (and on stop).
  A crash in between loses it; everything in the outbox is delivered at least once.

Without GATEWAY_ALERT_WEBHOOK_URLS every way is a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from urllib.parse import urlsplit

import orjson

from gateway.alerts.events import AlertEvent, new_event_id
from gateway.ledger.support_ports import Webhooks
from gateway.records import Alert, utcnow

log = logging.getLogger("gateway.alerts")
# Buffered hot-path alerts kept while the database is unreachable; beyond, new ones drop.
MAX_BUFFERED = 10_000


def endpoint_of(url: str) -> tuple[str, str]:
    """``(display form, SHA-256 of the URL)``: the display form drops credentials, query and
    fragment (where tokens live), so it can be stored and shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}", hashlib.sha256(url.encode()).hexdigest()


class Alerts:
    def __init__(self, urls: tuple[str, ...], webhooks: Webhooks) -> None:
        self._webhooks = webhooks
        self._endpoints = tuple(endpoint_of(u) for u in urls)
        # endpoint_hash -> full URL: how a sender finds the URL of a stored row.
        self.urls = {endpoint_of(u)[1]: u for u in urls}
        self._buffer: list[Alert] = []
        self.wake = asyncio.Event()
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return bool(self._endpoints)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def address(self, event: AlertEvent) -> list[Alert]:
        """The outbox rows of ``event``: none when no endpoint is configured."""
        if not self._endpoints:
            return []
        now, event_id = utcnow(), new_event_id()
        payload = orjson.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": event.type,
                "created": int(now.timestamp()),
                "data": event.data,
            }
        ).decode()
        return [Alert(event_id, event.type, event.dedup_key, payload, self._endpoints, now)]

    async def record(self, event: AlertEvent) -> None:
        """Writes ``event`` to the outbox now."""
        alerts = self.address(event)
        if alerts:
            await self._webhooks.enqueue(alerts)
            self.wake.set()

    def notify(self, event: AlertEvent) -> None:
        """Buffers ``event`` for the sender (synchronous, no I/O: for the hot path)."""
        if not self._endpoints:
            return
        if len(self._buffer) >= MAX_BUFFERED:
            self.dropped += 1
            log.error("alert buffer full (database unreachable?): dropped %s", event.dedup_key)
            return
        self._buffer.extend(self.address(event))
        self.wake.set()

    async def flush(self) -> None:
        """Writes the buffered alerts to the outbox; on failure they stay buffered."""
        if not self._buffer:
            return
        taken, self._buffer = self._buffer, []
        try:
            await self._webhooks.enqueue(taken)
        except BaseException:
            self._buffer[:0] = taken
            raise
