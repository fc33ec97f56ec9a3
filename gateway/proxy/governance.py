"""What a key and its owner allow a call (README "Keys and limits"): the user not disabled,
the model in both model lists, and the quotas the balance store checks at admission; the
refusals in OpenAI's shape and the ``x-ratelimit-*`` headers of the key's own limits.

Everything here reads the key and owner the authenticator cached: no read per call. The
headers follow OpenAI's names (platform.openai.com "Rate limits"): ``x-ratelimit-limit-,
-remaining-, -reset-requests`` and the ``-tokens`` variants; a reset is how long until the
oldest call counted in the sliding 60 s window leaves it, in OpenAI's duration format
(``1s``, ``6m0s``, ``20ms``). Where the key and its user both limit a dimension, the headers
show whichever leaves less.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from gateway.alerts.events import AlertEvent, budget_reached
from gateway.errors import Forbidden, KeyBudgetExceeded, RateLimited
from gateway.listeners import Header
from gateway.metering.quota import LimitRefusal, Quota, QuotaUsage, quota
from gateway.money import format_usd
from gateway.records import ApiKey, User

RATELIMIT_PREFIX = b"x-ratelimit-"


def allows(key: ApiKey, owner: User, model: str) -> bool:
    """Whether both the key's and its owner's model lists (names or globs) let ``model`` be
    used (a list that is None allows every model)."""
    return _listed(key.models, model) and _listed(owner.models, model)


def _listed(allowed: tuple[str, ...] | None, model: str) -> bool:
    return allowed is None or any(fnmatchcase(model, p) for p in allowed)


def check_caller(key: ApiKey, owner: User, model: object) -> None:
    """Raises 403 ``user_disabled`` or ``model_not_allowed`` (a ``model`` that is not a name
    is left to the catalog to refuse)."""
    if owner.disabled:
        raise Forbidden("This account is disabled; contact the operator.", code="user_disabled")
    if not isinstance(model, str):
        return
    for allowed, whose in ((key.models, "this API key"), (owner.models, "this account")):
        if not _listed(allowed, model):
            raise Forbidden(
                f"The model {model!r} is not allowed for {whose}.",
                code="model_not_allowed",
                param="model",
            )


def quotas_of(key: ApiKey, owner: User) -> tuple[Quota, ...]:
    """The quotas admission checks: the key's, then the user's (empty: no limits)."""
    found: tuple[Quota, ...] = ()
    if key.limits is not None and not key.limits.empty:
        found = (quota(f"k:{key.id}", key.limits),)
    if owner.limits is not None and not owner.limits.empty:
        found = (*found, quota(f"u:{owner.id}", owner.limits))
    return found


def refusal_error(
    refused: LimitRefusal, quotas: tuple[Quota, ...]
) -> KeyBudgetExceeded | RateLimited:
    q = next(q for q in quotas if q.scope == refused.scope)
    whose = "this API key" if q.scope.startswith("k:") else "this account"
    if refused.limit == "budget":
        error = KeyBudgetExceeded(
            f"The spending limit of {whose} (${format_usd(q.budget or 0)} per period) is "
            "reached, counting the calls in flight; it resets with the period."
        )
        error.scope = q.scope
        return error
    kind = "tokens" if refused.limit == "tpm" else "requests"
    limit = {"rpm": q.rpm, "tpm": q.tpm, "max_concurrent": q.max_concurrent}[refused.limit]
    name = {
        "rpm": "requests per minute (rpm)",
        "tpm": "tokens per minute (tpm)",
        "max_concurrent": "concurrent requests (max_concurrent)",
    }[refused.limit]
    headers: list[Header] = []
    if refused.retry_ms is None:
        tail = "This request alone needs more tokens than the limit allows; ask for fewer."
    else:
        wait = max(1, math.ceil(refused.retry_ms / 1000))
        tail = f"Please try again in {duration(refused.retry_ms)}."
        headers.append((b"retry-after", str(wait).encode()))
        headers.append((b"retry-after-ms", str(refused.retry_ms).encode()))
    if refused.limit != "max_concurrent":
        headers += [
            (b"x-ratelimit-limit-" + kind.encode(), str(limit).encode()),
            (b"x-ratelimit-remaining-" + kind.encode(), b"0"),
            (b"x-ratelimit-reset-" + kind.encode(), duration(refused.retry_ms or 0).encode()),
        ]
    return RateLimited(
        f"Rate limit reached for {whose} on {name}: limit {limit}. {tail}",
        type_=kind,
        headers=tuple(headers),
    )


def limit_headers(quotas: tuple[Quota, ...], usage: tuple[QuotaUsage, ...]) -> tuple[Header, ...]:
    """The x-ratelimit-* headers of a successful call (empty when no rpm or tpm applies)."""
    out: list[Header] = []
    for kind in (b"requests", b"tokens"):
        best: tuple[int, int, int] | None = None
        for q, u in zip(quotas, usage, strict=False):
            limit, used = (q.rpm, u.requests) if kind == b"requests" else (q.tpm, u.tokens)
            if limit is None:
                continue
            left = max(0, limit - used)
            if best is None or left < best[1]:
                best = (limit, left, u.reset_ms)
        if best is not None:
            out += [
                (b"x-ratelimit-limit-" + kind, str(best[0]).encode()),
                (b"x-ratelimit-remaining-" + kind, str(best[1]).encode()),
                (b"x-ratelimit-reset-" + kind, duration(best[2]).encode()),
            ]
    return tuple(out)


def own_limits(relayed: tuple[Header, ...], own: tuple[Header, ...]) -> tuple[Header, ...]:
    """An upstream success's relayed headers with its x-ratelimit-* replaced by the key's
    own (unchanged when the key has none: the caller then sees the provider's)."""
    if not own:
        return relayed
    return (*(h for h in relayed if not h[0].startswith(RATELIMIT_PREFIX)), *own)


def duration(ms: int) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def budget_alert(
    refused: KeyBudgetExceeded, quotas: tuple[Quota, ...], key: ApiKey, owner: User
) -> AlertEvent | None:
    """The ``budget.reached`` alert of a call refused by a budget (None when the refusal names
    no quota): reported once per scope and period, however many calls it refuses."""
    q = next((q for q in quotas if q.scope == refused.scope), None)
    if q is None or q.budget is None:
        return None
    start = datetime.fromtimestamp(q.period_start, UTC) if q.period != "total" else None
    return budget_reached(
        key_id=key.id if q.scope.startswith("k:") else None,
        user_id=owner.id,
        budget=q.budget,
        period=q.period,
        period_start=start,
    )
