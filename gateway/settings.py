"""Every environment variable the gateway reads, typed and validated once."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

from gateway.money import parse_usd


class SettingsError(ValueError):
    pass


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _shards(env: Mapping[str, str]) -> int:
    shards = _int(env, "GATEWAY_REDIS_SHARDS", 0, 1)
    if shards > 256:  # gateway.metering.layout.MAX_SHARDS
        raise SettingsError(f"GATEWAY_REDIS_SHARDS must be <= 256, got {shards}")
    return shards


def _float(env: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    # Durations only; never money. ``zero``: 0 is allowed (it turns the wait off).
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if value < 0 or (value == 0 and not zero) or not math.isfinite(value):
        raise SettingsError(f"{name} must be {'0 or more' if zero else 'positive'}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in (env.get(name) or "").split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            # Not the URL itself: it may carry a token.
            raise SettingsError(f"{name}: every URL must start with http:// or https://")
    return urls


PortalSignup = Literal["closed", "open", "invite"]
PORTAL_SIGNUP: tuple[PortalSignup, ...] = ("closed", "open", "invite")
UncappedCalls = Literal["fit", "refuse"]
UNCAPPED_CALLS: tuple[UncappedCalls, ...] = ("fit", "refuse")


ADMIN_KEY_MIN = 12
# Values from examples and habit that anyone would try first.
_PLACEHOLDERS = frozenset({"change-me", "changeme", "change_me", "admin", "secret", "password"})


def _secret(env: Mapping[str, str], name: str, unset: str) -> str | None:
    """A bearer secret (GATEWAY_ADMIN_KEY opens every balance; GATEWAY_METRICS_TOKEN shows
    revenue), refused when it is a placeholder or shorter than ADMIN_KEY_MIN characters;
    ``unset`` says what leaving it out does."""
    key = env.get(name) or None
    if key is not None and (key.lower() in _PLACEHOLDERS or len(key) < ADMIN_KEY_MIN):
        raise SettingsError(
            f"{name} is a placeholder or shorter than {ADMIN_KEY_MIN} characters: set a"
            f" random secret (e.g. `openssl rand -hex 24`), or unset it {unset}"
        )
    return key


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return choices[0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./gateway.db"
    redis_url: str | None = None
    models_path: Path = Path("./models.yaml")
    admin_key: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 32 * 1024 * 1024
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 600.0
    reservation_ttl: float = 900.0
    # Retries and fallbacks before the first byte reaches the client (gateway.routing): most
    # attempts per call (at least one per deployment), the backoff before retrying a
    # deployment (doubling up to the max), the longest Retry-After slept through, and how long
    # a failing deployment is passed over while another can serve.
    retry_attempts: int = 3
    retry_backoff: float = 0.25
    retry_backoff_max: float = 2.0
    retry_after_max: float = 2.0
    cooldown: float = 5.0
    # A call asked for without an output cap whose worst case the balance cannot cover: "fit"
    # forwards it with the largest cap the balance covers (a stream's hold then grows as it
    # produces), "refuse" answers 402.
    uncapped_calls: UncappedCalls = "fit"
    # Such a call streamed holds this many output tokens at first, and more as it produces.
    stream_hold_tokens: int = 1024
    shutdown_grace: float = 30.0
    # A client gone after a stream's answer ended: how long its usage report is still awaited.
    disconnect_grace: float = 5.0
    auth_cache_ttl: float = 5.0
    usage_flush_interval: float = 0.05
    stream_claim_idle: float = 60.0
    spill_dir: Path | None = None
    low_balance_warn: int = 1 * 10**9
    low_balance_critical: int = 10**8
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8080"
    checkout_min: int = 5 * 10**9
    checkout_max: int = 1000 * 10**9
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None
    reconcile_interval: float = 60.0
    # Operator alert webhooks (gateway.alerts): endpoints (may carry tokens: kept out of reprs
    # and of the database), the signing secret, the time one attempt may take, the retry
    # schedule (backoff doubling from ``backoff`` up to ``backoff_max``, then ``failed`` after
    # ``max_attempts``) and how often each process looks for due deliveries.
    alert_webhook_urls: tuple[str, ...] = field(default=(), repr=False)
    alert_webhook_secret: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    alert_webhook_timeout: float = 10.0
    alert_webhook_backoff: float = 30.0
    alert_webhook_backoff_max: float = 3600.0
    alert_webhook_max_attempts: int = 12
    alert_webhook_poll: float = 5.0
    allow_volatile_redis: bool = False
    # Customer portal (gateway.portal): who may sign up (closed, open, or invite: with an
    # operator's invitation) and the credit each sign-up is granted once (nano-USD).
    portal_signup: PortalSignup = "closed"
    portal_welcome_credit: int = 0
    # Usage stream shards (gateway/metering/layout.py); 0: 1 on one Redis, 16 on a cluster
    # (GATEWAY_REDIS_URL=redis+cluster://...). Fixed for a deployment: see the README.
    redis_shards: int = 0
    # Open sign-ups accepted per client address per window (seconds); 0: no limit.
    portal_signup_limit: int = 5
    portal_signup_window: float = 86400.0
    gateway_url: str = "http://127.0.0.1:8080"
    # How long a web page sign-in (portal or dashboard) lasts, in seconds (the cookie's Max-Age).
    session_lifetime: float = 7 * 86400.0
    # Usage rows of the current UTC month and this many before it are kept; older months are
    # dropped at startup and daily (gateway/usage_retention.py). None: kept forever.
    usage_retention_months: int | None = None
    # Test hook only: the process exits between the ledger commit and the balance-store apply
    # of a posting whose reference starts with this (tests/production proves the repair).
    crash_after_commit: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    def spill_folder(self) -> Path:
        """Where records and credits that could not be written yet wait, in both modes:
        ``GATEWAY_SPILL_DIR``, else ``gateway-spill`` beside the SQLite database, else
        ``<tmp>/gateway-spill`` (set it to persistent storage in production)."""
        if self.spill_dir is not None:
            return self.spill_dir
        path = self.database_url.removeprefix("sqlite:///")
        if self.database_url.startswith("sqlite:///") and path not in ("", ":memory:"):
            return Path(path).resolve().parent / "gateway-spill"
        return Path(tempfile.gettempdir()) / "gateway-spill"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        db = env.get("GATEWAY_DATABASE_URL") or "sqlite:///./gateway.db"
        if not db.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("GATEWAY_DATABASE_URL must start with sqlite:/// or postgresql://")
        try:
            warn = parse_usd(env.get("GATEWAY_LOW_BALANCE_WARN", "1.00"), allow_zero=True)
            critical = parse_usd(env.get("GATEWAY_LOW_BALANCE_CRITICAL", "0.10"), allow_zero=True)
        except ValueError as exc:
            raise SettingsError(f"low balance thresholds: {exc}") from exc
        try:
            checkout_min = parse_usd(env.get("GATEWAY_CHECKOUT_MIN") or "5.00")
            checkout_max = parse_usd(env.get("GATEWAY_CHECKOUT_MAX") or "1000.00")
        except ValueError as exc:
            raise SettingsError(f"GATEWAY_CHECKOUT_MIN/MAX: {exc}") from exc
        cent = 10**7  # nano-USD; Stripe charges whole cents
        if checkout_min % cent or checkout_max % cent or checkout_min > checkout_max:
            raise SettingsError("GATEWAY_CHECKOUT_MIN/MAX must be whole cents, min <= max")
        try:
            welcome = parse_usd(env.get("GATEWAY_PORTAL_WELCOME_CREDIT") or "0", allow_zero=True)
        except ValueError as exc:
            raise SettingsError(f"GATEWAY_PORTAL_WELCOME_CREDIT: {exc}") from exc
        urls = _urls(env, "GATEWAY_ALERT_WEBHOOK_URLS")
        if urls and not env.get("GATEWAY_ALERT_WEBHOOK_SECRET"):
            raise SettingsError(
                "GATEWAY_ALERT_WEBHOOK_URLS needs GATEWAY_ALERT_WEBHOOK_SECRET to sign the alerts"
            )
        return cls(
            database_url=db,
            redis_url=env.get("GATEWAY_REDIS_URL") or None,
            models_path=Path(env.get("GATEWAY_MODELS") or "./models.yaml"),
            admin_key=_secret(env, "GATEWAY_ADMIN_KEY", "to close the admin API"),
            host=env.get("GATEWAY_HOST") or "127.0.0.1",
            port=_int(env, "GATEWAY_PORT", 8080, 1),
            max_body_bytes=_int(env, "GATEWAY_MAX_BODY_BYTES", 32 * 1024 * 1024, 1024),
            upstream_connect_timeout=_float(env, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 10.0),
            upstream_read_timeout=_float(env, "GATEWAY_UPSTREAM_TIMEOUT", 600.0),
            reservation_ttl=_float(env, "GATEWAY_RESERVATION_TTL", 900.0),
            retry_attempts=_int(env, "GATEWAY_RETRY_ATTEMPTS", 3, 1),
            retry_backoff=_float(env, "GATEWAY_RETRY_BACKOFF", 0.25, zero=True),
            retry_backoff_max=_float(env, "GATEWAY_RETRY_BACKOFF_MAX", 2.0, zero=True),
            retry_after_max=_float(env, "GATEWAY_RETRY_AFTER_MAX", 2.0, zero=True),
            cooldown=_float(env, "GATEWAY_COOLDOWN", 5.0, zero=True),
            uncapped_calls=cast(
                UncappedCalls, _choice(env, "GATEWAY_UNCAPPED_CALLS", UNCAPPED_CALLS)
            ),
            stream_hold_tokens=_int(env, "GATEWAY_STREAM_HOLD_TOKENS", 1024, 1),
            shutdown_grace=_float(env, "GATEWAY_SHUTDOWN_GRACE", 30.0),
            disconnect_grace=_float(env, "GATEWAY_DISCONNECT_GRACE", 5.0),
            auth_cache_ttl=_float(env, "GATEWAY_AUTH_CACHE_TTL", 5.0),
            stream_claim_idle=_float(env, "GATEWAY_STREAM_CLAIM_IDLE", 60.0),
            spill_dir=Path(env["GATEWAY_SPILL_DIR"]) if env.get("GATEWAY_SPILL_DIR") else None,
            low_balance_warn=warn,
            low_balance_critical=critical,
            stripe_api_key=env.get("STRIPE_API_KEY") or None,
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            public_url=env.get("GATEWAY_PUBLIC_URL") or "http://127.0.0.1:8080",
            checkout_min=checkout_min,
            checkout_max=checkout_max,
            checkout_success_url=env.get("GATEWAY_CHECKOUT_SUCCESS_URL") or None,
            checkout_cancel_url=env.get("GATEWAY_CHECKOUT_CANCEL_URL") or None,
            reconcile_interval=_float(env, "GATEWAY_RECONCILE_INTERVAL", 60.0),
            alert_webhook_urls=urls,
            alert_webhook_secret=env.get("GATEWAY_ALERT_WEBHOOK_SECRET") or None,
            metrics_token=_secret(env, "GATEWAY_METRICS_TOKEN", "to leave /metrics open"),
            alert_webhook_timeout=_float(env, "GATEWAY_ALERT_WEBHOOK_TIMEOUT", 10.0),
            alert_webhook_backoff=_float(env, "GATEWAY_ALERT_WEBHOOK_BACKOFF", 30.0),
            alert_webhook_backoff_max=_float(env, "GATEWAY_ALERT_WEBHOOK_BACKOFF_MAX", 3600.0),
            alert_webhook_max_attempts=_int(env, "GATEWAY_ALERT_WEBHOOK_MAX_ATTEMPTS", 12, 1),
            alert_webhook_poll=_float(env, "GATEWAY_ALERT_WEBHOOK_POLL", 5.0),
            allow_volatile_redis=_flag(env, "GATEWAY_ALLOW_VOLATILE_REDIS"),
            portal_signup=cast(PortalSignup, _choice(env, "GATEWAY_PORTAL_SIGNUP", PORTAL_SIGNUP)),
            portal_welcome_credit=welcome,
            redis_shards=_shards(env),
            portal_signup_limit=_int(env, "GATEWAY_PORTAL_SIGNUP_LIMIT", 5, 0),
            portal_signup_window=_float(env, "GATEWAY_PORTAL_SIGNUP_WINDOW", 86400.0),
            gateway_url=env.get("GATEWAY_URL") or "http://127.0.0.1:8080",
            session_lifetime=_float(env, "GATEWAY_SESSION_LIFETIME", 7 * 86400.0),
            usage_retention_months=_int(env, "GATEWAY_USAGE_RETENTION_MONTHS", 0) or None,
            crash_after_commit=env.get("GATEWAY_TEST_CRASH_AFTER_COMMIT") or None,
            extra_env=dict(env),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
