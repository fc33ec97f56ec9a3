"""Every environment variable the gateway reads, typed and validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

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


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    # Durations only; never money.
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./gateway.db"
    redis_url: str | None = None
    models_path: Path = Path("./models.yaml")
    admin_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 32 * 1024 * 1024
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 600.0
    reservation_ttl: float = 900.0
    shutdown_grace: float = 30.0
    auth_cache_ttl: float = 5.0
    usage_flush_interval: float = 0.05
    stream_claim_idle: float = 60.0
    spill_dir: Path | None = None
    low_balance_warn: int = 1 * 10**9
    low_balance_critical: int = 10**8
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8080"
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

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
        return cls(
            database_url=db,
            redis_url=env.get("GATEWAY_REDIS_URL") or None,
            models_path=Path(env.get("GATEWAY_MODELS") or "./models.yaml"),
            admin_key=env.get("GATEWAY_ADMIN_KEY") or None,
            host=env.get("GATEWAY_HOST") or "127.0.0.1",
            port=_int(env, "GATEWAY_PORT", 8080, 1),
            max_body_bytes=_int(env, "GATEWAY_MAX_BODY_BYTES", 32 * 1024 * 1024, 1024),
            upstream_connect_timeout=_float(env, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 10.0),
            upstream_read_timeout=_float(env, "GATEWAY_UPSTREAM_TIMEOUT", 600.0),
            reservation_ttl=_float(env, "GATEWAY_RESERVATION_TTL", 900.0),
            shutdown_grace=_float(env, "GATEWAY_SHUTDOWN_GRACE", 30.0),
            auth_cache_ttl=_float(env, "GATEWAY_AUTH_CACHE_TTL", 5.0),
            stream_claim_idle=_float(env, "GATEWAY_STREAM_CLAIM_IDLE", 60.0),
            spill_dir=Path(env["GATEWAY_SPILL_DIR"]) if env.get("GATEWAY_SPILL_DIR") else None,
            low_balance_warn=warn,
            low_balance_critical=critical,
            stripe_api_key=env.get("STRIPE_API_KEY") or None,
            stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            public_url=env.get("GATEWAY_PUBLIC_URL") or "http://127.0.0.1:8080",
            extra_env=dict(env),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
