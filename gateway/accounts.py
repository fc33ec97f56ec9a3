"""Operator and account actions, shared by the admin API and the CLI.

Stateless: each function takes the services it needs. Every balance change goes through the
ledger first (the durable truth) and then reaches the balance store at once; every operator
action lands in the audit trail.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.auth import Authenticator, NewKey, new_key
from gateway.errors import Conflict, GatewayError, NotFound, Unprocessable
from gateway.ledger.base import DuplicateUser, InsufficientFunds, Ledger, UnknownUser
from gateway.metering.store import BalanceStore
from gateway.money import MoneyError, format_usd, parse_usd
from gateway.records import ApiKey, AuditEvent, Entry, User

USER_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")
MAX_BULK = 1000


@dataclass(frozen=True)
class Accounts:
    ledger: Ledger
    store: BalanceStore
    auth: Authenticator | None = None

    async def user_view(self, user: User) -> dict[str, Any]:
        snapshot = await self.store.snapshot(user.id)
        balance, reserved = snapshot if snapshot is not None else (user.balance, 0)
        return {
            "id": user.id,
            "email": user.email,
            "balance": format_usd(balance),
            "reserved": format_usd(reserved),
            "created_at": user.created_at.isoformat(),
        }

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
            amount(initial_credit, param="initial_credit", allow_zero=True)
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
        return await self._grant(
            user_id,
            amount(value),
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
        self, user_id: str, value: object, *, reason: str | None, actor: str
    ) -> Entry:
        """Sets the durable balance by one ``adjustment`` entry for the difference.

        The difference is computed by the ledger inside its transaction (no settlement can
        land between reading and writing it) and then applied to the balance store as a delta:
        the store stays ``ledger balance - usage not yet written``, so calls settled but not
        yet flushed are still billed after the new balance, never lost or counted twice.
        """
        target = amount(value, param="balance", allow_zero=True)
        reference = f"admin:{secrets.token_hex(8)}"
        try:
            entry = await self.ledger.journal.set_balance(
                user_id, balance=target, reference=reference, reason=reason, actor=actor
            )
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        if entry.created and entry.amount:
            await self.store.credit(
                user_id, entry.amount, version=entry.version, reference=entry.reference
            )
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
        self, user_ids: object, value: object, *, reason: str | None, actor: str
    ) -> list[dict[str, Any]]:
        """Credits each user on its own: an unknown user fails alone, the others apply.

        The amount and the list are validated first (a bad one changes nothing); each credit
        then has its own reference ``bulk:<id>:<user>`` and audit event, and one summary event
        ``credits.bulk`` lists the outcome.
        """
        ids = _user_ids(user_ids)
        credit = amount(value)
        bulk_id = secrets.token_hex(8)
        results: list[dict[str, Any]] = []
        for user_id in ids:
            try:
                entry = await self._grant(
                    user_id,
                    credit,
                    reason=reason,
                    actor=actor,
                    reference=f"bulk:{bulk_id}:{user_id}",
                    details={"bulk": bulk_id},
                )
            except GatewayError as exc:
                results.append(
                    {
                        "user_id": user_id,
                        "status": "failed",
                        "error": {"code": exc.code, "message": exc.message},
                    }
                )
                continue
            results.append(
                {
                    "user_id": user_id,
                    "status": "applied",
                    "entry": entry_view(entry),
                    "balance": (await self.user_view(await self.require_user(user_id)))["balance"],
                }
            )
        await self.ledger.audit.record_audit(
            AuditEvent(
                actor=actor,
                action="credits.bulk",
                target=None,
                amount=credit,
                reason=reason,
                details={
                    "bulk": bulk_id,
                    "applied": [r["user_id"] for r in results if r["status"] == "applied"],
                    "failed": [r["user_id"] for r in results if r["status"] == "failed"],
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
            entry = await self.ledger.journal.post_entry(
                user_id, kind=kind, amount=delta, reference=reference, reason=reason, actor=actor
            )
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        except InsufficientFunds as exc:
            raise Unprocessable(
                "the balance cannot cover this debit", code="insufficient_balance"
            ) from exc
        if entry.created:
            await self.store.credit(
                user_id, delta, version=entry.version, reference=entry.reference
            )
        return entry


def amount(value: object, *, param: str = "amount", allow_zero: bool = False) -> int:
    """A positive USD amount from an API body or CLI flag, as nano-USD; 422 otherwise."""
    try:
        return parse_usd(value, allow_zero=allow_zero)
    except MoneyError as exc:
        raise Unprocessable(f"{param}: {exc}", param=param, code="invalid_amount") from exc


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


async def money_view(accounts: Accounts, user_id: str, entry: Entry) -> dict[str, Any]:
    """What a credit or balance change answers: the entry and the user after it."""
    user = await accounts.require_user(user_id)
    return {"entry": entry_view(entry), "user": await accounts.user_view(user)}


def bulk_view(results: list[dict[str, Any]]) -> dict[str, Any]:
    applied = sum(1 for r in results if r["status"] == "applied")
    return {
        "data": results,
        "has_more": False,
        "applied": applied,
        "failed": len(results) - applied,
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "user_id": key.user_id,
        "prefix": key.prefix,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def new_key_view(fresh: NewKey, record: ApiKey) -> dict[str, Any]:
    """The key itself is shown here, once."""
    return {
        "id": fresh.id,
        "key": fresh.key,
        "prefix": fresh.prefix,
        "name": record.name,
        "user_id": record.user_id,
    }


def entry_view(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": format_usd(entry.amount),
        "balance_after": format_usd(entry.balance_after),
        "reference": entry.reference,
        "reason": entry.reason,
        "created_at": entry.created_at.isoformat(),
    }
