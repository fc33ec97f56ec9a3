"""The account service: users, keys and operator money moves, behind gateway/actions.py.

Stateless: each function takes the services it needs. Every balance change goes through the
ledger first (the durable truth) and then reaches the balance store at once; every operator
action lands in the audit trail.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.auth import Authenticator, NewKey, new_key
from gateway.errors import Conflict, GatewayError, NotFound, Unavailable, Unprocessable
from gateway.ledger.base import (
    DuplicateUser,
    InsufficientFunds,
    Ledger,
    ReferenceConflict,
    UnknownUser,
)
from gateway.metering.store import BalanceStore
from gateway.money import format_usd, parse_amount
from gateway.postings import Postings
from gateway.records import ApiKey, AuditEvent, Entry, User

log = logging.getLogger("gateway.accounts")

USER_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}\Z")
# A caller's own idempotency reference (an API client's, a dashboard form's one-time id).
REFERENCE = re.compile(r"^[A-Za-z0-9_.:-]{8,100}\Z")
MAX_BULK = 1000


@dataclass(frozen=True)
class BulkApplied:
    """A bulk credit that landed for ``user_id``: its entry (``created`` False on a replay of
    the bulk's reference) and the balance after, as ``Accounts.balance_after`` gives it."""

    user_id: str
    entry: Entry
    balance: int
    reserved: int | None


@dataclass(frozen=True)
class BulkFailed:
    """A bulk credit refused for ``user_id`` (e.g. no such user), and why."""

    user_id: str
    error: GatewayError


@dataclass(frozen=True)
class Accounts:
    ledger: Ledger
    store: BalanceStore
    auth: Authenticator | None = None

    async def balance_of(self, user: User) -> tuple[int, int]:
        """(balance, reserved) in nano-USD as the balance store sees them now; the ledger's
        balance and nothing reserved while the store has not loaded the user."""
        snapshot = await self.store.snapshot(user.id)
        return snapshot if snapshot is not None else (user.balance, 0)

    async def balance_after(self, user: User) -> tuple[int, int | None]:
        """(balance, reserved) in nano-USD for the answer to a money move already committed:
        the store's view when it answers, else (the store unreachable, e.g. Redis restarting)
        the ledger's balance in ``user`` (read after the commit) and None for reserved, which
        only the store knows. The move is durable and reaches the store from the retry queue
        or the reconciler, so its answer must not be an error the caller would retry."""
        try:
            return await self.balance_of(user)
        except Unavailable as exc:
            log.warning("answering %s's balance from the ledger: %s", user.id, exc)
            return user.balance, None

    async def require_user(self, user_id: str) -> User:
        user = await self.ledger.directory.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return user

    async def create_user(
        self, *, user_id: str | None, email: str | None, initial_credit: object, actor: str
    ) -> User:
        user_id = user_id or "user_" + secrets.token_hex(6)
        if not USER_ID.match(user_id):
            raise Unprocessable(
                "id may hold letters, digits and _.@:- (1-128 chars)", param="id", code="invalid_id"
            )
        credit = (
            parse_amount(initial_credit, param="initial_credit", allow_zero=True)
            if initial_credit is not None
            else 0
        )
        try:
            await self.ledger.directory.create_user(user_id=user_id, email=email)
        except DuplicateUser as exc:
            raise Conflict(f"user {user_id!r} already exists", code="user_exists") from exc
        await self.ledger.audit.record_audit(
            AuditEvent(actor=actor, action="user.create", target=user_id, amount=credit or None)
        )
        if credit:
            await self._post(
                user_id,
                kind="grant",
                delta=credit,
                reference=f"grant:{user_id}:initial",
                reason="initial credit",
            )
        return await self.require_user(user_id)

    async def create_key(
        self, user_id: str, *, name: str | None, actor: str
    ) -> tuple[NewKey, ApiKey]:
        await self.require_user(user_id)
        fresh = new_key()
        record = await self.ledger.directory.create_key(
            user_id, key_id=fresh.id, key_hash=fresh.key_hash, prefix=fresh.prefix, name=name
        )
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor, action="key.create", target=user_id, details={"key_id": fresh.id}
            )
        )
        return fresh, record

    async def revoke_key(self, key_id: str, *, actor: str) -> ApiKey:
        key = await self.ledger.directory.revoke_key(key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        if self.auth is not None:
            self.auth.forget(key_id)
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor, action="key.revoke", target=key.user_id, details={"key_id": key_id}
            )
        )
        return key

    async def add_credit(
        self,
        user_id: str,
        value: object,
        *,
        reason: str | None,
        actor: str,
        reference: str | None = None,
    ) -> Entry:
        """A ``grant`` of ``value`` USD. With a ``reference`` (see ``own_reference``) a second
        credit of the same reference moves nothing and answers the first entry (``created``
        False); the same reference for another user or amount raises Conflict."""
        return await self._grant(
            user_id,
            parse_amount(value),
            reason=reason,
            actor=actor,
            reference=reference or f"admin:{secrets.token_hex(8)}",
        )

    async def _grant(
        self,
        user_id: str,
        credit: int,
        *,
        reason: str | None,
        actor: str,
        reference: str,
        details: dict[str, Any] | None = None,
    ) -> Entry:
        await self.require_user(user_id)
        entry = await self._post(
            user_id, kind="grant", delta=credit, reference=reference, reason=reason, actor=actor
        )
        if not entry.created:
            return entry  # a replay: the first credit was audited, nothing moved now
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor,
                action="credits.add",
                target=user_id,
                amount=credit,
                reason=reason,
                details={
                    "reference": reference,
                    "balance": format_usd(entry.balance_after),
                    **(details or {}),
                },
            )
        )
        return entry

    async def set_balance(
        self,
        user_id: str,
        value: object,
        *,
        reason: str | None,
        actor: str,
        reference: str | None = None,
    ) -> Entry:
        """Sets the durable balance by one ``adjustment`` entry for the difference.

        With a ``reference``, a second call of the same reference moves nothing (even if the
        balance moved since) and answers the first entry (``created`` False).

        The difference is computed by the ledger inside its transaction (no settlement can
        land between reading and writing it) and then applied to the balance store as a delta:
        the store stays ``ledger balance - usage not yet written``, so calls settled but not
        yet flushed are still billed after the new balance, never lost or counted twice.
        """
        target = parse_amount(value, param="balance", allow_zero=True)
        reference = reference or f"admin:{secrets.token_hex(8)}"
        try:
            entry = await Postings(self.ledger.journal, self.store).set_balance(
                user_id, balance=target, reference=reference, reason=reason, actor=actor
            )
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        except ReferenceConflict as exc:
            raise _reused(reference) from exc
        if not entry.created:
            # The ledger cannot tell (the amount depended on the balance then): the first set
            # aimed elsewhere when it left another balance behind.
            if entry.balance_after != target:
                raise _reused(reference)
            return entry
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor,
                action="balance.set",
                target=user_id,
                amount=entry.amount,
                reason=reason,
                details={
                    "reference": reference,
                    "previous_balance": format_usd(entry.balance_after - entry.amount),
                    "balance": format_usd(entry.balance_after),
                },
            )
        )
        return entry

    async def bulk_credit(
        self,
        user_ids: object,
        value: object,
        *,
        reason: str | None,
        actor: str,
        reference: str | None = None,
    ) -> list[BulkApplied | BulkFailed]:
        """Credits each user on its own: an unknown user fails alone, the others apply.

        The amount and the list are validated first (a bad one changes nothing); each credit
        then has its own reference and audit event, and one summary event ``credits.bulk``
        lists the outcome. Each user's reference is ``bulk:<random id>:<user>`` without a
        ``reference`` (see ``caller_reference``), else ``admin:bulk:<reference>/<user>``: a
        replay of the bulk then credits nobody twice (those rows come back with the first
        entry, ``created`` False) and a user whose credit failed the first time gets it now;
        a replay with another amount fails those rows with ``reference_reused``.
        """
        ids = _user_ids(user_ids)
        credit = parse_amount(value)
        bulk_id = secrets.token_hex(8)
        results: list[BulkApplied | BulkFailed] = []
        for user_id in ids:
            try:
                entry = await self._grant(
                    user_id,
                    credit,
                    reason=reason,
                    actor=actor,
                    reference=_bulk_reference(reference, bulk_id, user_id),
                    details={"bulk": bulk_id},
                )
            except GatewayError as exc:
                results.append(BulkFailed(user_id, exc))
                continue
            balance, reserved = await self.balance_after(await self.require_user(user_id))
            results.append(BulkApplied(user_id, entry, balance, reserved))
        applied = [r for r in results if isinstance(r, BulkApplied)]
        if len(applied) == len(results) and not any(r.entry.created for r in applied):
            return results  # a whole replay: the first bulk was audited, nothing moved now
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor,
                action="credits.bulk",
                target=None,
                amount=credit,
                reason=reason,
                details={
                    "bulk": bulk_id,
                    **({"reference": reference} if reference else {}),
                    "applied": [r.user_id for r in applied if r.entry.created],
                    "duplicate": [r.user_id for r in applied if not r.entry.created],
                    "failed": [r.user_id for r in results if isinstance(r, BulkFailed)],
                },
            )
        )
        return results

    async def _post(
        self,
        user_id: str,
        *,
        kind: str,
        delta: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Entry:
        try:
            return await Postings(self.ledger.journal, self.store).post(
                user_id, kind=kind, amount=delta, reference=reference, reason=reason, actor=actor
            )
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        except InsufficientFunds as exc:
            raise Unprocessable(
                "the balance cannot cover this debit", code="insufficient_balance"
            ) from exc
        except ReferenceConflict as exc:
            raise _reused(reference) from exc


def own_reference(value: object) -> str | None:
    """A caller's idempotency reference for one credit or balance set, as the ledger reference
    ``admin:ref:<it>`` (apart from every reference the gateway makes itself); None when not
    given. Raises Unprocessable as ``caller_reference`` does."""
    checked = caller_reference(value)
    return f"admin:ref:{checked}" if checked is not None else None


def caller_reference(value: object) -> str | None:
    """A caller's idempotency reference (8-100 of A-Z a-z 0-9 _.:-) as given; None when not
    given. Raises Unprocessable (``invalid_reference``) for anything else."""
    if value is None:
        return None
    if not isinstance(value, str) or not REFERENCE.match(value):
        raise Unprocessable(
            "reference must be 8 to 100 letters, digits or _.:-",
            param="reference",
            code="invalid_reference",
        )
    return value


def _bulk_reference(reference: str | None, bulk_id: str, user_id: str) -> str:
    """One user's ledger reference in a bulk credit. A caller's reference lives under
    ``admin:bulk:``, which nothing else writes; ``/`` is in neither a reference nor a user id,
    so no two (reference, user) pairs share one."""
    if reference is None:
        return f"bulk:{bulk_id}:{user_id}"
    return f"admin:bulk:{reference}/{user_id}"


def _reused(reference: str) -> Conflict:
    return Conflict(
        f"reference {reference!r} was already used for another change; nothing changed",
        param="reference",
        code="reference_reused",
    )


def _user_ids(value: object) -> list[str]:
    """A bulk request's user ids: 1..MAX_BULK strings, duplicates dropped (first kept)."""
    if not isinstance(value, list) or not value or len(value) > MAX_BULK:
        raise Unprocessable(
            f"user_ids must be a list of 1 to {MAX_BULK} user ids",
            param="user_ids",
            code="invalid_user_ids",
        )
    if not all(isinstance(v, str) and v for v in value):
        raise Unprocessable(
            "user_ids must hold user id strings", param="user_ids", code="invalid_user_ids"
        )
    return list(dict.fromkeys(value))
