"""The ledger's supporting ports, over the same database as ``gateway.ledger.ports``:

    Webhooks      the outbox of operator alerts and their deliveries (webhooks.py)
    Sessions      the web pages' browser sessions (sessions.py)
    UsageStorage  the usage rows' months: partitions ahead, retention (partitions.py,
                  retention.py)

Contract tests: tests/ledger (test_webhooks.py, test_sessions*.py, test_usage_storage.py) on
SQLite and PostgreSQL. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.records import Alert, WebhookDelivery, WebSession


class Webhooks(Protocol):
    """The outbox of operator alerts (gateway.alerts), one row per alert and endpoint.
    Guarantees:

    - ``enqueue`` (and ``webhooks.write_alert`` on a transaction) stores an alert once per
      ``(dedup_key, endpoint)``: the same occurrence written again stores nothing and keeps
      the first ``event_id``; a new row is ``pending`` and due at once.
    - ``claim_due`` hands a due pending row to one caller at a time, in any process: the
      claim pushes ``next_attempt_at`` to the lease's end (``lease`` seconds), so the row is
      due again only if its sender never finishes it (a crash): then another claims it.
    - ``finish_delivery`` counts one attempt and writes the outcome only while the caller's
      claim holds the row; it answers whether it did.
    - ``list_deliveries`` pages newest first by id, strictly below ``before``.
    """

    async def enqueue(self, alerts: list[Alert]) -> None:
        """Writes the alerts in one transaction."""

    async def claim_due(self, *, limit: int, lease: float) -> list[WebhookDelivery]:
        """Up to ``limit`` due rows, oldest first, each with its ``claim`` token."""

    async def finish_delivery(
        self,
        delivery_id: int,
        *,
        claim: str,
        status: str,
        next_attempt_at: datetime,
        http_status: int | None,
        error: str | None,
    ) -> bool:
        """``status``: delivered | pending (retry at ``next_attempt_at``) | failed."""

    async def list_deliveries(
        self, *, status: str | None, type: str | None, before: int | None, limit: int
    ) -> tuple[list[WebhookDelivery], bool]: ...


class Sessions(Protocol):
    """Browser sessions of the web pages (gateway/pages/sessions.py). Guarantees:

    - ``create_session`` stores a session under its ``token_hash`` (a second session with
      the same hash is an error: tokens are random) and deletes every expired one;
    - ``get_session`` answers a session only until its ``expires_at``, else None;
    - ``end_session`` deletes one session and answers whether it existed;
    - ``end_sessions_of`` deletes every session of ``user_id`` except ``except_token_hash``
      (the one signing out the others) and answers how many it ended. Operator sessions
      (``user_id`` None) are never ended by it;
    - ``end_operator_sessions`` deletes every operator session (``user_id`` None) and answers
      how many it ended; users' sessions stay.
    """

    async def create_session(self, session: WebSession) -> None: ...

    async def get_session(self, token_hash: str) -> WebSession | None: ...

    async def end_session(self, token_hash: str) -> bool: ...

    async def end_sessions_of(
        self, user_id: str, *, except_token_hash: str | None = None
    ) -> int: ...

    async def end_operator_sessions(self) -> int: ...


class UsageStorage(Protocol):
    """Where the usage rows live over time (PostgreSQL: one partition per UTC month,
    partitions.py; SQLite: one table, retention.py). Guarantees:

    - ``write_usage`` never fails for want of storage for a record's month, prepared or not;
    - ``drop_before`` removes only usage rows (never ledger entries, never rollups), so the
      balances stay sums of their entries and the reports keep their totals (to the hour:
      a report's sub-hour edges are read from the rows). A charged record replayed after its
      row was dropped is still never recorded or debited twice (its ledger reference stays).
    """

    async def prepare(self, now: datetime) -> list[str]:
        """Adds the storage of ``now``'s month and the next one ahead of time; answers the
        months it added (``YYYY-MM``)."""

    async def months_before(self, month: datetime) -> list[str]:
        """The months (``YYYY-MM``) holding usage rows created before ``month`` (the first
        instant of a UTC month), oldest first: what ``drop_before`` would remove. PostgreSQL
        names every partition, empty or not."""

    async def drop_before(self, month: datetime) -> list[str]:
        """Removes the usage rows created before ``month`` (the first instant of a UTC
        month): PostgreSQL drops those months' partitions whole, SQLite deletes the rows.
        Answers the months removed (``YYYY-MM``)."""
