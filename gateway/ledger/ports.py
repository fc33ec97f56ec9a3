"""The ledger's ports of users and money: small repositories over the same database (the
alert outbox, web sessions and the usage rows' storage are ``gateway.ledger.support_ports``).

    Directory  users and their API keys
    Journal    the money: entries, balances, usage debits (the only code that moves money)
    Audit      who did what to whom
    Reports    usage pages, aggregates and the price book
    Payments   Stripe events, refund plans, billing profiles, auto top-up claims

One implementation of each serves both databases (directory.py, journal.py, audit.py,
reports.py, payments.py, webhooks.py); tests/ledger (test_webhooks.py for the outbox),
tests/admin/test_reports_contract.py and tests/billing/test_billing_ledger.py check them on
SQLite and PostgreSQL. Amounts are ``int``
nano-USD; timestamps are timezone-aware UTC datetimes; a page answers ``(rows, has_more)``.

Where a method takes ``audit``, it is called with the method's result and the event it
returns is written in the same transaction as the change it describes; a call that changes
nothing (a replayed reference, a key already revoked) writes none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from gateway.records import (
    Alert,
    ApiKey,
    AuditEvent,
    BillingProfile,
    Entry,
    Limits,
    StripeEvent,
    TopupClaim,
    UsageRecord,
    User,
)
from gateway.report_records import (
    Cursor,
    Day,
    DayTotals,
    GroupTotals,
    ModelTotals,
    Period,
    PriceChange,
    PriceRow,
    Totals,
    UsageFilter,
    UserTotals,
)

T = TypeVar("T")
# Builds the audit event of a change from its result (e.g. an Entry's balance_after).
Audited = Callable[[T], AuditEvent]


class Directory(Protocol):
    """Users and keys. Users are never deleted: a user that exists once exists for good."""

    async def create_user(
        self, *, user_id: str, email: str | None, audit: Audited[User] | None = None
    ) -> User:
        """A user with balance 0 and version 0. Raises ``DuplicateUser`` when the id exists."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def list_users(
        self, *, query: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[User], bool]:
        """Newest first (created_at, then id), strictly after ``after`` (the last row's
        ``(created_at, id)``), so a user created between two pages never shifts them.
        ``query`` keeps the users whose id or email contains it, ignoring case."""

    async def create_key(
        self,
        user_id: str,
        *,
        key_id: str,
        key_hash: str,
        prefix: str,
        name: str | None,
        expires_at: datetime | None = None,
        limits: Limits | None = None,
        models: tuple[str, ...] | None = None,
        metadata: dict[str, Any] | None = None,
        audit: Audited[ApiKey] | None = None,
    ) -> ApiKey:
        """Raises ``UnknownUser`` when there is no such user."""

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def update_key(
        self, key_id: str, changes: dict[str, Any], *, audit: Audited[ApiKey] | None = None
    ) -> ApiKey | None:
        """Sets the fields named in ``changes`` (name, expires_at, limits, models, metadata;
        a None value clears one); others are ignored. None: no such key."""

    async def update_user(
        self, user_id: str, changes: dict[str, Any], *, audit: Audited[User] | None = None
    ) -> User | None:
        """Sets the fields named in ``changes`` (email, disabled, limits, models). None: no
        such user."""

    async def rotate_key(
        self,
        key_id: str,
        *,
        new_id: str,
        key_hash: str,
        prefix: str,
        old_expires_at: datetime,
        audit: Audited[ApiKey] | None = None,
    ) -> tuple[ApiKey, ApiKey] | None:
        """(old, new): a new key for the same user with the old one's name, expiry, limits,
        models and metadata, in one transaction with the old one's expiry brought forward to
        ``old_expires_at`` (never pushed back) and its ``rotated_to``. None: no such key or
        it is revoked."""

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        """Newest first (revoked ones included)."""

    async def revoke_key(
        self, key_id: str, *, audit: Audited[ApiKey] | None = None
    ) -> ApiKey | None:
        """Marks the key revoked; revoking again keeps the first time. None: no such key."""

    async def find_key(self, key_hash: str) -> tuple[ApiKey, User] | None:
        """The key with this hash and its owner, read together."""


class Journal(Protocol):
    """The money. Guarantees:

    - Atomicity: a balance change and its ledger entry commit together or not at all.
    - Books: for every user ``users.balance == sum(entries.amount)``; in id order every entry's
      ``balance_after`` is the previous one's plus its amount.
    - Versions: ``users.version`` grows by exactly one per entry, so it always equals the
      number of the user's entries, and the entry's ``version`` (column ``user_version``) is
      the user's version right after it: 1, 2, 3... per user in id order. The last entry's
      version is the user's version. Every ``Entry`` returned carries it.
    - Idempotency: a ``reference`` is unique; posting it again answers the first entry with
      ``created=False`` (same id, amount, balance_after and version) and moves nothing, and
      reusing it for another movement (user, kind, or fixed amount) raises
      ``ReferenceConflict``. ``write_usage`` records a request id at most once and debits only
      the records it inserted.
    - Balances go below zero only through usage (a call that cost more than reserved is still
      billed); operator and payment debits raise ``InsufficientFunds`` instead.
    """

    async def post_entry(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        """Moves ``amount`` (signed) into the balance. Raises ``UnknownUser``, or
        ``InsufficientFunds`` when a non-usage debit would take the balance below zero."""

    async def set_balance(
        self,
        user_id: str,
        *,
        balance: int,
        reference: str,
        reason: str | None,
        actor: str | None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        """One ``adjustment`` entry for the difference, computed from the balance inside the
        transaction (no settlement can land between reading and writing it)."""

    async def debit_up_to(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        """Posts ``-min(amount, max(balance, 0))`` atomically: a refund of a credit already
        spent takes what is left and never takes the balance below zero."""

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        """Inserts the records not yet present and debits their cost (one ``usage`` entry per
        record that costs something, reference ``usage:<request id>``), in one transaction.
        Returns the request ids inserted, in the order given; the first copy of a request id
        within a batch wins. A record of an unknown user refuses the whole batch
        (``UnknownUser``)."""

    async def balance(self, user_id: str) -> tuple[int, int] | None:
        """``(balance, version)`` read together; None for an unknown user."""

    async def list_entries(self, user_id: str) -> list[Entry]:
        """Oldest first."""

    async def entries_after(
        self, user_id: str, version: int, *, limit: int | None = None
    ) -> list[Entry]:
        """The entries with a version above ``version``, oldest first: what a balance loaded
        at ``version`` does not include yet."""


class Audit(Protocol):
    async def record_audit(self, event: AuditEvent) -> None: ...

    async def list_audit(
        self, *, target: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], bool]:
        """Newest first; ``target`` and ``action`` filter when given."""


class Reports(Protocol):
    """Usage pages, aggregates and the price book. Guarantees:

    - Every aggregate is one statement (one snapshot) that also sums its groups into the total:
      groups and total always agree and equal the sums over the records they cover (by tag,
      whose groups overlap, the total is summed from the records in the same statement).
    - A ``Period`` is half-open, ``[start, end)``; ``None`` leaves that side open.
    - ``list_usage_before`` pages by a (created_at, request_id) cursor: a row inserted between
      two pages can neither repeat a row nor push one out.
    - ``sync_prices`` diffs the catalog against the stored book and writes the book and one
      audit event per changed model in one transaction: in a fleet of processes loading the
      same file only the first records the change.
    """

    async def list_usage(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[UsageRecord], bool]:
        """Newest first."""

    async def list_usage_before(
        self, user_id: str, *, cursor: Cursor | None, limit: int, only: UsageFilter | None = None
    ) -> tuple[list[UsageRecord], bool]:
        """Newest first, strictly after ``cursor``; ``only`` narrows the rows."""

    async def usage_since(
        self,
        *,
        user_id: str | None,
        period: Period,
        after: Cursor | None,
        limit: int,
        only: UsageFilter | None = None,
    ) -> list[UsageRecord]:
        """Oldest first, strictly after ``after``, at most ``limit``: the pages of an export
        (a row inserted while paging is never repeated and never pushes one out). ``only``'s
        model and key narrow the rows (``period`` is the range)."""

    async def usage_totals(
        self, *, user_id: str | None, period: Period
    ) -> tuple[Totals, list[ModelTotals]]:
        """Totals and the per provider:model breakdown (by cost, highest first)."""

    async def usage_groups(
        self, *, user_id: str | None, period: Period, group_by: str, limit: int
    ) -> tuple[Totals, list[GroupTotals], bool]:
        """Totals and the breakdown by ``group_by`` (``key`` | ``tag`` | ``end_user`` |
        ``session``), highest cost first, at most ``limit`` groups; has_more. Calls without the
        attribute form the ``None`` group (listed last among equal costs). By ``tag`` a call
        counts in each of its tags, so the groups may sum past the total (which counts every
        call once)."""

    async def revenue_by_day(
        self, days: Sequence[Day], *, user_id: str | None = None
    ) -> tuple[Totals, list[DayTotals]]:
        """One row per given day (zeros included), in the order given, and their total;
        ``user_id``: that user's calls only."""

    async def spend_since(self, *, scope: str, since: datetime) -> int:
        """Nano-USD of the usage recorded at or after ``since`` for a quota scope:
        ``k:<key id>`` (that key's calls) or ``u:<user id>`` (all the user's calls)."""

    async def top_users(
        self, *, period: Period, limit: int
    ) -> tuple[Totals, list[UserTotals], bool]:
        """All users' total and the ``limit`` users with the highest cost; has_more."""

    async def list_prices(self) -> list[PriceRow]:
        """The price book as last synced, by model name."""

    async def sync_prices(
        self, prices: Sequence[PriceRow], *, actor: str, reason: str | None = None
    ) -> list[PriceChange]:
        """Makes the book equal ``prices``; audits and returns what changed."""


class Payments(Protocol):
    """Stripe's side of the books (money itself moves through the Journal). Guarantees:

    - ``claim_stripe_event`` records an event id once: it answers None the first time and the
      stored status afterwards (the caller skips final statuses).
    - ``finish_stripe_event`` writes the outcome only while the row is still retryable
      (``records.RETRYABLE``): the first finisher of concurrent deliveries wins and a final
      outcome never changes.
    - ``plan_refund_debit`` serialises the refunds of one charge: under a per-charge lock it
      fixes, once per reference, how much this cumulative refund level still has to debit.
    - ``claim_auto_topup`` is the cross-process guard: it succeeds only for an enabled profile
      with no PaymentIntent in flight (or a stale unanswered claim, which keeps its ``seq`` so
      the retry reuses the same idempotency key).
    """

    async def claim_stripe_event(self, event: StripeEvent) -> str | None: ...

    async def finish_stripe_event(
        self, outcome: StripeEvent, *, alerts: Sequence[Alert] = ()
    ) -> None:
        """``alerts`` (e.g. a refund shortfall) commit in the same transaction."""

    async def list_stripe_events(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[StripeEvent], bool]:
        """Newest first; ``status`` filters when given."""

    async def get_stripe_event(self, event_id: str) -> StripeEvent | None:
        """The stored event and its outcome, or None for an id never claimed."""

    async def find_stripe_credit(self, payment_intent: str) -> tuple[str, int] | None:
        """(user_id, credited nano-USD) of the credited payment behind a PaymentIntent."""

    async def plan_refund_debit(
        self, *, charge_id: str, reference: str, user_id: str, target_total: int
    ) -> int: ...

    async def get_billing_profile(self, user_id: str) -> BillingProfile | None: ...

    async def save_auto_topup(
        self, user_id: str, *, enabled: bool, threshold: int, amount: int
    ) -> BillingProfile:
        """Raises ``UnknownUser``; enabling clears the last error."""

    async def set_stripe_customer(self, user_id: str, customer_id: str) -> str:
        """Stores the customer unless one is stored already; returns the stored one."""

    async def claim_auto_topup(self, user_id: str, *, stale_after: float) -> TopupClaim | None:
        """``stale_after``: seconds after which an unanswered claim may be claimed again."""

    async def set_topup_intent(self, user_id: str, *, seq: int, intent_id: str) -> None: ...

    async def finish_auto_topup(
        self,
        user_id: str,
        *,
        intent_id: str | None,
        seq: int | None,
        failure: str | None,
        alerts: Sequence[Alert] = (),
    ) -> None:
        """Clears this trigger's in-flight marker; a ``failure`` also disables auto top-up.
        ``alerts`` commit in the same transaction."""
