"""The domain records every layer passes around: users, keys, money, usage, audit, payments.

Plain frozen dataclasses with no behaviour beyond small predicates. This module sits at the
bottom of the package: it imports nothing from ``gateway`` so storage (``ledger/``), metering,
the proxy and the operator surface can all depend on it without depending on each other.
Amounts are ``int`` nano-USD; timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

ENTRY_KINDS = ("grant", "topup", "usage", "adjustment", "refund")


def utcnow() -> datetime:
    return datetime.now(UTC)


PERIODS = ("day", "week", "month", "total")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key (or a user, over all their keys) may use; None: no such limit.

    ``budget`` is nano-USD per ``period`` (day, week or month as the calendar runs in ``tz``,
    or total); ``rpm``/``tpm`` are requests and tokens in any 60 s; ``max_concurrent`` the calls
    in flight at once (gateway/metering/quota.py)."""

    budget: int | None = None
    period: str = "total"
    tz: str = "UTC"
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    @property
    def empty(self) -> bool:
        return (
            self.budget is None
            and self.rpm is None
            and self.tpm is None
            and self.max_concurrent is None
        )


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str | None
    balance: int
    created_at: datetime
    version: int = 0
    # Added by migration 0007: a disabled user's calls are refused (balance kept); limits and
    # models apply over all the user's keys, on top of each key's own (the stricter wins).
    disabled: bool = False
    limits: Limits | None = None
    models: tuple[str, ...] | None = None  # names or fnmatch globs; None: every model


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: str
    prefix: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    # Added by migration 0007 (see User for limits and models); ``metadata`` is the caller's
    # own JSON object, stored and shown, never interpreted.
    limits: Limits | None = None
    models: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None
    rotated_to: str | None = None  # the key id that replaced this one (rotation)

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    user_id: str
    kind: str
    amount: int
    balance_after: int
    reference: str
    reason: str | None
    actor: str | None
    created_at: datetime
    created: bool = True
    # The user's ledger version right after this entry (column user_version), set on every
    # Entry the ledger returns: fresh, replayed or read back. users.version grows by exactly
    # one per entry, so it is also the entry's position among the user's entries. Lets the
    # balance store tell whether a balance it loaded already includes this change.
    version: int | None = None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One served call. Unit prices are those charged, so later price changes never rewrite it.

    Token classes: ``cached_tokens``, ``cache_write_tokens`` (of which
    ``cache_write_1h_tokens``) and ``prompt_audio_tokens`` are parts of ``prompt_tokens``;
    ``reasoning_tokens`` and ``output_audio_tokens`` are parts of ``completion_tokens`` (the
    output billed). Prices are nano-USD per 1M tokens, those of the long-context tier when one
    applied; a None price was not set and charged at its fallback (``gateway.pricing``).
    ``cost`` and ``overdraft`` are nano-USD; ``overdraft`` is the part of ``cost`` above what
    the call had reserved (a provider reporting more than the worst case), billed all the same.

    ``status``: ok | upstream_error | client_disconnected | upstream_cut | interrupted |
    credit_exhausted (an uncapped stream the balance stopped covering) | error.
    ``usage_source``: upstream (the provider's usage, as reported) | counted (no usage: the
    prompt and the produced text counted with tiktoken) | upstream_prompt_counted (the
    reported prompt was missing or implausibly small and was counted; the rest as reported) |
    upstream_output_counted (no output count was reported: the produced text was counted).
    """

    request_id: str
    user_id: str
    key_id: str | None
    model: str
    provider: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    price_input: int
    price_cached_input: int | None
    price_output: int
    cost: int
    status: str
    usage_source: str
    latency_ms: int
    created_at: datetime = field(default_factory=utcnow)
    # Added by migration 0005; defaults keep records written before it readable (spill files,
    # the Redis stream).
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    prompt_audio_tokens: int = 0
    output_audio_tokens: int = 0
    price_cache_write: int | None = None
    price_cache_write_1h: int | None = None
    price_audio_input: int | None = None
    price_audio_output: int | None = None
    overdraft: int = 0
    # Added by migration 0006: the deployment whose answer the call got, "provider/upstream
    # model" (gateway.routing); ``provider`` is its provider. None: recorded before routing.
    deployment: str | None = None
    # Added by migration 0008: who and what the call was for (gateway.proxy.attribution).
    # ``end_user``: the request's ``safety_identifier`` or ``user``; ``tags``: distinct, in
    # the order given; ``session_id``: the x-gateway-session-id header. None/(): not given.
    end_user: str | None = None
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    # Added by migration 0012: Anthropic's web search requests (a count, not tokens) and
    # their price in nano-USD per 1,000 requests (None: the model has none).
    web_search_requests: int = 0
    price_web_search: int | None = None

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens`` (derived, so it can never disagree)."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One operator action: who did what to whom, with which amounts and why."""

    actor: str
    action: str
    target: str | None
    amount: int | None = None
    reason: str | None = None
    details: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=utcnow)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """One received Stripe event and what the gateway did with it.

    ``status``: processing | credited | refunded | refund_shortfall | awaiting_payment |
    payment_failed | foreign_currency | unmatched | ignored | error. Only processing,
    unmatched and error are worked again when the same event id comes back.
    """

    event_id: str
    type: str
    status: str
    payload: str
    user_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    payment_ref: str | None = None
    payment_intent: str | None = None
    detail: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


RETRYABLE = frozenset({"processing", "unmatched", "error"})


@dataclass(frozen=True, slots=True)
class BillingProfile:
    user_id: str
    stripe_customer_id: str | None = None
    auto_topup_enabled: bool = False
    threshold: int = 0
    amount: int = 0
    in_flight_intent: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class TopupClaim:
    """The right to create one off-session PaymentIntent; ``seq`` names the trigger."""

    user_id: str
    seq: int
    amount: int
    threshold: int
    stripe_customer_id: str | None


@dataclass(frozen=True, slots=True)
class Alert:
    """One operator alert on its way to the webhook endpoints (gateway.alerts).

    ``payload`` is the exact JSON body sent (it carries ``event_id``, the receiver's dedup
    id); ``dedup_key`` names the occurrence that caused it, so writing the same occurrence
    twice stores it once; ``endpoints`` are ``(display URL, SHA-256 of the full URL)``.
    """

    event_id: str
    type: str
    dedup_key: str
    payload: str
    endpoints: tuple[tuple[str, str], ...]
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One alert to one endpoint. ``status``: pending | delivered | failed; ``claim`` is set
    while a sender holds the row (``next_attempt_at`` is then its lease's end)."""

    id: int
    event_id: str
    type: str
    dedup_key: str
    endpoint: str
    endpoint_hash: str
    payload: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    claim: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Login:
    """A user's customer-portal login (migration 0011): email and argon2id password hash.

    ``email`` is as the user typed it; logins are unique by its case-folded form.
    ``welcome_credit`` (nano-USD) is what sign-up granted, fixed then, so a grant retried
    later posts the same amount under the same reference."""

    user_id: str
    email: str
    password_hash: str = field(repr=False)
    created_at: datetime
    password_changed_at: datetime
    welcome_credit: int = 0


@dataclass(frozen=True, slots=True)
class Invite:
    """An operator's invitation to sign up to the portal (invite-only sign-up). Its token is
    shown once and stored hashed; ``email``, when set, is the only address it admits."""

    id: str
    email: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    used_at: datetime | None = None
    used_by: str | None = None


@dataclass(frozen=True, slots=True)
class LoginLink:
    """An operator's one-time link for a user to set their portal email and password
    (migration 0015): a first login for an existing user, or a password reset. Its token is
    shown once and stored hashed; ``used_at`` is set when it is used or replaced."""

    id: str
    user_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser (gateway/pages/sessions.py). The cookie holds a random token; only
    its SHA-256 (``token_hash``, hex) is stored. ``user_id`` None: the operator, signed in with
    the admin key (which is stored nowhere). ``csrf_token`` is what every POST form of the
    session must carry."""

    token_hash: str
    user_id: str | None
    csrf_token: str
    created_at: datetime
    expires_at: datetime
