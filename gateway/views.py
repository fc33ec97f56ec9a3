"""Every JSON view: domain records -> the dicts the HTTP API returns and the CLI prints.

Pure functions, no I/O: the caller fetches, a view only shapes. Money is rendered as USD
decimal strings (``format_usd``: at least 2, at most 9 decimals), timestamps as ISO 8601 UTC.
The admin API, /me and ``gateway ... --direct`` answer through these same functions, so the
shapes cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from gateway.ledger.price_book import price_details
from gateway.money import format_usd
from gateway.records import (
    ApiKey,
    AuditEvent,
    BillingProfile,
    Entry,
    Limits,
    StripeEvent,
    UsageRecord,
    User,
)
from gateway.report_records import Period, PriceChange, PriceRow, Totals

Json = dict[str, Any]

# -- users, keys and money moves -----------------------------------------------------------


def user_view(user: User, balance: int, reserved: int | None) -> Json:
    """A user with the balance and reservations (nano-USD) the balance store holds now.

    ``reserved`` None (null) only in the answer to a money move already committed while the
    store could not be read: ``balance`` is then the ledger's (usage not yet written to the
    ledger not subtracted) and what calls in flight hold is unknown."""
    return {
        "id": user.id,
        "email": user.email,
        "balance": format_usd(balance),
        "reserved": _usd_or_none(reserved),
        "created_at": user.created_at.isoformat(),
        "disabled": user.disabled,
        "limits": limits_view(user.limits),
        "models": list(user.models) if user.models is not None else None,
    }


def limits_view(limits: Limits | None) -> Json | None:
    """Limits as the API takes them: the budget amount in USD."""
    if limits is None:
        return None
    budget = None
    if limits.budget is not None:
        budget = {"amount": format_usd(limits.budget), "period": limits.period, "tz": limits.tz}
    return {
        "budget": budget,
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "max_concurrent": limits.max_concurrent,
    }


def limit_usage_view(
    spent: int, reserved: int, requests: int, tokens: int, in_flight: int, resets_at: str | None
) -> Json:
    """A scope's counters now: the budget period's spend and what calls in flight hold
    (USD), requests and tokens in the last 60 s, calls in flight, when the period resets."""
    return {
        "spent": format_usd(spent),
        "reserved": format_usd(reserved),
        "requests": requests,
        "tokens": tokens,
        "in_flight": in_flight,
        "period_resets_at": resets_at,
    }


def caller_view(key: ApiKey, balance: int, reserved: int) -> Json:
    """GET /me: the caller's balance and the key they called with."""
    return {
        "user_id": key.user_id,
        "balance": format_usd(balance),
        "reserved": format_usd(reserved),
        "key": {"id": key.id, "prefix": key.prefix, "name": key.name},
    }


def key_view(key: ApiKey) -> Json:
    return {
        "id": key.id,
        "user_id": key.user_id,
        "prefix": key.prefix,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "limits": limits_view(key.limits),
        "models": list(key.models) if key.models is not None else None,
        "metadata": key.metadata,
        "rotated_to": key.rotated_to,
    }


def keys_view(keys: list[ApiKey]) -> Json:
    return {"data": [key_view(k) for k in keys], "has_more": False}


def new_key_view(record: ApiKey, secret: str) -> Json:
    """A key just created: the only answer that ever shows the key itself (``secret``)."""
    return {
        "id": record.id,
        "key": secret,
        "prefix": record.prefix,
        "name": record.name,
        "user_id": record.user_id,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "limits": limits_view(record.limits),
        "models": list(record.models) if record.models is not None else None,
        "metadata": record.metadata,
    }


def entry_view(entry: Entry) -> Json:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": format_usd(entry.amount),
        "balance_after": format_usd(entry.balance_after),
        "reference": entry.reference,
        "reason": entry.reason,
        "version": entry.version,
        "created_at": entry.created_at.isoformat(),
    }


def money_view(entry: Entry, user: Json) -> Json:
    """What a credit or balance change answers: the entry and the user (a ``user_view``)
    after it; ``duplicate`` when the change's reference had been applied before (the first
    entry, nothing moved now)."""
    return {"entry": entry_view(entry), "user": user, "duplicate": not entry.created}


def bulk_view(results: list[Json]) -> Json:
    """A bulk credit: one ``bulk_applied`` or ``bulk_failed`` row per user (request order)
    and the counts."""
    applied = sum(1 for r in results if r["status"] == "applied")
    return {
        "data": results,
        "has_more": False,
        "applied": applied,
        "failed": len(results) - applied,
    }


def bulk_applied(user_id: str, entry: Entry, balance: int, reserved: int | None) -> Json:
    """One user of a bulk credit whose credit landed: its entry, the balance and reservations
    after (``reserved`` null: the store could not be read, as in ``user_view``) and
    ``duplicate`` when the bulk's reference had credited this user before (the first entry,
    nothing moved now)."""
    return {
        "user_id": user_id,
        "status": "applied",
        "entry": entry_view(entry),
        "balance": format_usd(balance),
        "reserved": _usd_or_none(reserved),
        "duplicate": not entry.created,
    }


def bulk_failed(user_id: str, code: str | None, message: str) -> Json:
    """One user of a bulk credit that was refused, and why (the error an API call gives)."""
    return {"user_id": user_id, "status": "failed", "error": {"code": code, "message": message}}


# -- usage, reports, audit -----------------------------------------------------------------


def usage_view(r: UsageRecord) -> Json:
    """One call as billed: every token class, the unit prices (USD per 1M tokens) it was
    charged at (null: not set, charged at its fallback), the overdraft (USD) and who and what
    it was for (``end_user``, ``tags``, ``session_id``: null or [] when not given)."""
    return {
        "request_id": r.request_id,
        "key_id": r.key_id,
        "model": r.model,
        "provider": r.provider,
        "deployment": r.deployment,
        "endpoint": r.endpoint,
        "prompt_tokens": r.prompt_tokens,
        "cached_tokens": r.cached_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "prompt_audio_tokens": r.prompt_audio_tokens,
        "completion_tokens": r.completion_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "output_audio_tokens": r.output_audio_tokens,
        "total_tokens": r.total_tokens,
        "price_per_1m_tokens": {
            "input": format_usd(r.price_input),
            "cached_input": _usd_or_none(r.price_cached_input),
            "cache_write": _usd_or_none(r.price_cache_write),
            "cache_write_1h": _usd_or_none(r.price_cache_write_1h),
            "audio_input": _usd_or_none(r.price_audio_input),
            "output": format_usd(r.price_output),
            "audio_output": _usd_or_none(r.price_audio_output),
        },
        "web_search_requests": r.web_search_requests,
        "price_per_1k_requests": {"web_search": _usd_or_none(r.price_web_search)},
        "cost": format_usd(r.cost),
        "overdraft": format_usd(r.overdraft),
        "status": r.status,
        "usage_source": r.usage_source,
        "latency_ms": r.latency_ms,
        "end_user": r.end_user,
        "tags": list(r.tags),
        "session_id": r.session_id,
        "created_at": r.created_at.isoformat(),
    }


def _usd_or_none(nanos: int | None) -> str | None:
    return None if nanos is None else format_usd(nanos)


def totals_view(t: Totals, *, money: str) -> Json:
    """Request and token counts and their cost, under the key ``money`` ("cost" for a user,
    "revenue" for the operator)."""
    return {
        "requests": t.requests,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "cached_tokens": t.cached_tokens,
        "reasoning_tokens": t.reasoning_tokens,
        "total_tokens": t.prompt_tokens + t.completion_tokens,
        money: format_usd(t.cost),
    }


def average_cost(t: Totals) -> str:
    """Cost per request, rounded half up to a nano-dollar (display only; never charged)."""
    if t.requests == 0:
        return format_usd(0)
    return format_usd((2 * t.cost + t.requests) // (2 * t.requests))


def share(part: int, whole: int) -> str:
    """Percent of revenue with two decimals, exact integer arithmetic (display only)."""
    if whole == 0:
        return "0.00"
    hundredths = (part * 10_000 * 2 + whole) // (2 * whole)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def period_view(p: Period) -> dict[str, str | None]:
    return {
        "from": p.start.isoformat() if p.start else None,
        "to": p.end.isoformat() if p.end else None,
    }


def audit_view(e: AuditEvent) -> Json:
    return {
        "id": e.id,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "amount": None if e.amount is None else format_usd(e.amount),
        "reason": e.reason,
        "details": e.details,
        "created_at": e.created_at.isoformat(),
    }


# -- prices --------------------------------------------------------------------------------


def price_view(row: PriceRow) -> Json:
    """A model and its prices (USD per 1M tokens), as GET /admin/models shows it and as
    price-change audit events record it (one shape, written once in the ledger)."""
    return price_details(row)


def price_list_view(rows: list[PriceRow]) -> Json:
    """GET /admin/models: the prices in force (from a catalog or the ledger's price book)."""
    return {"data": [price_view(r) for r in rows], "has_more": False}


def price_change_view(c: PriceChange) -> Json:
    return {
        "model": c.model,
        "action": c.events[0].action if c.events else None,
        "old": price_view(c.old) if c.old else None,
        "new": price_view(c.new) if c.new else None,
    }


def reload_view(
    *, models: int, digest: str, previous_digest: str, changes: list[PriceChange]
) -> Json:
    """POST /admin/models/reload: how many models are in force, the file digests before and
    after, and each price change."""
    return {
        "models": models,
        "digest": digest,
        "previous_digest": previous_digest,
        "changes": [price_change_view(c) for c in changes],
    }


# -- payments ------------------------------------------------------------------------------


def event_view(e: StripeEvent) -> Json:
    return {
        "id": e.event_id,
        "type": e.type,
        "status": e.status,
        "user_id": e.user_id,
        "amount": None if e.amount is None else format_usd(e.amount),
        "currency": e.currency,
        "payment_ref": e.payment_ref,
        "payment_intent": e.payment_intent,
        "detail": e.detail,
        "created_at": e.created_at.isoformat() if e.created_at else None,
        "updated_at": e.updated_at.isoformat() if e.updated_at else None,
    }


def webhook_answer(e: StripeEvent, duplicate: bool) -> Json:
    """What a Stripe event came to: the answer to its delivery, and what ``gateway stripe
    replay`` prints in both its forms (through the gateway, or ``--direct``)."""
    return {"received": True, **event_view(e), "duplicate": duplicate}


def profile_view(p: BillingProfile) -> Json:
    """A user's auto top-up settings; ``in_flight`` while a top-up payment is pending."""
    return {
        "enabled": p.auto_topup_enabled,
        "threshold": format_usd(p.threshold),
        "amount": format_usd(p.amount),
        "stripe_customer_id": p.stripe_customer_id,
        "in_flight": p.in_flight_intent is not None,
        "last_error": p.last_error,
    }
