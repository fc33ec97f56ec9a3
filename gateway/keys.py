"""Key and user governance behind gateway/actions.py and /me: create a key with settings,
change them, rotate a key, read its limits with the period's counters, change a user.

A change reaches the calls of this process at once (its cached lookups are dropped) and of
every other process within GATEWAY_AUTH_CACHE_TTL (their caches expire): no call reads the
database for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.accounts import Accounts
from gateway.auth import NewKey, new_key
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.key_settings import key_changes, merged_limits, user_changes
from gateway.ledger.base import UnknownUser
from gateway.metering.quota import QuotaUsage, period_bounds, quota
from gateway.records import ApiKey, AuditEvent, Limits, User, utcnow
from gateway.views import limits_view

MAX_GRACE = 30 * 24 * 3600


async def create_key(
    accounts: Accounts, user_id: str, params: Mapping[str, Any], *, actor: str
) -> tuple[NewKey, ApiKey]:
    changes = key_changes(params)
    expires = changes.get("expires_at")
    if expires is not None and expires <= utcnow():
        # A key born expired is a typo (a PATCH may still end a key now, on purpose).
        raise Unprocessable("expires_at must be in the future", param="expires_at")
    await accounts.require_user(user_id)
    fresh = new_key()
    try:
        record = await accounts.ledger.directory.create_key(
            user_id,
            key_id=fresh.id,
            key_hash=fresh.key_hash,
            prefix=fresh.prefix,
            name=changes.get("name"),
            expires_at=changes.get("expires_at"),
            limits=changes.get("limits"),
            models=changes.get("models"),
            metadata=changes.get("metadata"),
            audit=lambda k: AuditEvent(
                actor=actor, action="key.create", target=user_id, details={"key_id": k.id}
            ),
        )
    except UnknownUser as exc:
        raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
    return fresh, record


async def require_key(accounts: Accounts, key_id: str, *, user_id: str | None = None) -> ApiKey:
    """The key; 404 when there is none, or it is not ``user_id``'s (a caller's own keys)."""
    key = await accounts.ledger.directory.get_key(key_id)
    if key is None or (user_id is not None and key.user_id != user_id):
        raise NotFound(f"no key {key_id!r}", code="key_not_found")
    return key


async def update_key(
    accounts: Accounts, key_id: str, params: Mapping[str, Any], *, actor: str
) -> ApiKey:
    changes = key_changes(params)
    if "limits" in changes:
        current = await require_key(accounts, key_id)
        changes["limits"] = merged_limits(current.limits, params["limits"])
    updated = await accounts.ledger.directory.update_key(
        key_id,
        changes,
        audit=lambda k: AuditEvent(
            actor=actor,
            action="key.update",
            target=k.user_id,
            details={"key_id": key_id, "fields": sorted(changes), "new": audited(changes)},
        ),
    )
    if updated is None:
        raise NotFound(f"no key {key_id!r}", code="key_not_found")
    if accounts.auth is not None:
        accounts.auth.forget(key_id)
    return updated


async def rotate_key(
    accounts: Accounts, key_id: str, params: Mapping[str, Any], *, actor: str
) -> tuple[NewKey, ApiKey, ApiKey]:
    """(the new key's secret, the new key, the old key now expiring after the grace)."""
    grace = params.get("grace_seconds", 0)
    if isinstance(grace, str) and grace.isdigit():
        grace = int(grace)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE:
        raise Unprocessable(
            f"grace_seconds must be a whole number from 0 to {MAX_GRACE}", param="grace_seconds"
        )
    current = await require_key(accounts, key_id)
    if current.rotated_to is not None:
        # Its expiry is the grace of that rotation: a key made from it would be born expired.
        raise Conflict(
            f"key {key_id!r} was already rotated to {current.rotated_to!r}; rotate that key"
        )
    fresh = new_key()
    rotated = await accounts.ledger.directory.rotate_key(
        key_id,
        new_id=fresh.id,
        key_hash=fresh.key_hash,
        prefix=fresh.prefix,
        old_expires_at=utcnow() + timedelta(seconds=grace),
        audit=lambda k: AuditEvent(
            actor=actor,
            action="key.rotate",
            target=k.user_id,
            details={"key_id": key_id, "new_key_id": k.id, "grace_seconds": grace},
        ),
    )
    if rotated is None:
        raise NotFound(f"no usable key {key_id!r}", code="key_not_found")
    if accounts.auth is not None:
        accounts.auth.forget(key_id)
    old, new = rotated
    return fresh, new, old


async def update_user(
    accounts: Accounts, user_id: str, params: Mapping[str, Any], *, actor: str
) -> User:
    changes = user_changes(params)
    if "limits" in changes:
        user = await accounts.ledger.directory.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        changes["limits"] = merged_limits(user.limits, params["limits"])
    updated = await accounts.ledger.directory.update_user(
        user_id,
        changes,
        audit=lambda u: AuditEvent(
            actor=actor,
            action="user.update",
            target=user_id,
            details={"fields": sorted(changes), "new": audited(changes)},
        ),
    )
    if updated is None:
        raise NotFound(f"no user {user_id!r}", code="user_not_found")
    if accounts.auth is not None:
        accounts.auth.forget(user_id=user_id)
    return updated


def audited(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The new values of a change as its audit event keeps them (JSON: limits as the API
    shows them, times in ISO 8601), so the log says what a change set, not only which
    fields: ``{"disabled": true}``, ``{"limits": {"rpm": 30, ...}}``."""
    shown: dict[str, Any] = {}
    for name, value in changes.items():
        if isinstance(value, Limits):
            value = limits_view(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        shown[name] = value
    return shown


async def limit_usage(
    accounts: Accounts, user_id: str, scope: str, limits: Limits | None
) -> tuple[QuotaUsage, datetime | None] | None:
    """A scope's counters now and when its budget period resets (None: never); None when
    the scope has no limits."""
    if limits is None or limits.empty:
        return None
    q = quota(scope, limits)
    usage = await accounts.store.quota_usage(user_id, q)
    end = period_bounds(limits.period, limits.tz)[1] if limits.budget is not None else None
    return usage, datetime.fromtimestamp(end, UTC) if end is not None else None
