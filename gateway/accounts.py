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
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.ledger.base import (
    ApiKey,
    AuditEvent,
    DuplicateUser,
    Entry,
    InsufficientFunds,
    Ledger,
    UnknownUser,
    User,
)
from gateway.metering.store import BalanceStore
from gateway.money import MoneyError, format_usd, parse_usd

USER_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")


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
        user = await self.ledger.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return user

    async def create_user(
        self, *, user_id: str | None, email: str | None, initial_credit: object, actor: str
    ) -> User:
        user_id = user_id or "user_" + secrets.token_hex(6)
        if not USER_ID.match(user_id):
            raise Unprocessable("id may hold letters, digits and _.@:- (1-128 chars)",
                                param="id", code="invalid_id")
        credit = amount(initial_credit, param="initial_credit", allow_zero=True) \
            if initial_credit is not None else 0
        try:
            user = await self.ledger.create_user(user_id=user_id, email=email)
        except DuplicateUser as exc:
            raise Conflict(f"user {user_id!r} already exists", code="user_exists") from exc
        await self.ledger.record_audit(AuditEvent(actor=actor, action="user.create",
                                                  target=user_id, amount=credit or None))
        if credit:
            await self._post(user_id, kind="grant", delta=credit,
                             reference=f"grant:{user_id}:initial", reason="initial credit")
        return await self.require_user(user_id)

    async def create_key(self, user_id: str, *, name: str | None, actor: str) -> tuple[NewKey, ApiKey]:
        await self.require_user(user_id)
        fresh = new_key()
        record = await self.ledger.create_key(user_id, key_id=fresh.id, key_hash=fresh.key_hash,
                                              prefix=fresh.prefix, name=name)
        await self.ledger.record_audit(AuditEvent(actor=actor, action="key.create",
                                                  target=user_id, details={"key_id": fresh.id}))
        return fresh, record

    async def revoke_key(self, key_id: str, *, actor: str) -> ApiKey:
        key = await self.ledger.revoke_key(key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        if self.auth is not None:
            self.auth.forget(key_id)
        await self.ledger.record_audit(AuditEvent(actor=actor, action="key.revoke",
                                                  target=key.user_id, details={"key_id": key_id}))
        return key

    async def add_credit(self, user_id: str, value: object, *, reason: str | None, actor: str,
                         reference: str | None = None) -> Entry:
        credit = amount(value)
        await self.require_user(user_id)
        reference = reference or f"admin:{secrets.token_hex(8)}"
        entry = await self._post(user_id, kind="grant", delta=credit, reference=reference,
                                 reason=reason, actor=actor)
        await self.ledger.record_audit(AuditEvent(actor=actor, action="credits.add",
                                                  target=user_id, amount=credit, reason=reason,
                                                  details={"reference": reference}))
        return entry

    async def _post(self, user_id: str, *, kind: str, delta: int, reference: str,
                    reason: str | None = None, actor: str | None = None) -> Entry:
        try:
            entry = await self.ledger.post_entry(user_id, kind=kind, amount=delta,
                                                 reference=reference, reason=reason, actor=actor)
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        except InsufficientFunds as exc:
            raise Unprocessable("the balance cannot cover this debit",
                                code="insufficient_balance") from exc
        if entry.created:
            await self.store.credit(user_id, delta)
        return entry


def amount(value: object, *, param: str = "amount", allow_zero: bool = False) -> int:
    """A positive USD amount from an API body or CLI flag, as nano-USD; 422 otherwise."""
    try:
        return parse_usd(value, allow_zero=allow_zero)
    except MoneyError as exc:
        raise Unprocessable(f"{param}: {exc}", param=param, code="invalid_amount") from exc


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
