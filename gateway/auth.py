"""Gateway API keys: generation, hashing, lookup with a short-lived cache.

Keys are 256-bit random tokens, so an unsalted SHA-256 is enough to store them: there is no
dictionary to attack. Only the hash and a visible prefix are kept; the key is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from gateway.errors import Forbidden, GatewayError, Unauthorized, Unavailable
from gateway.ledger.ports import Directory
from gateway.records import ApiKey, User, utcnow

KEY_PREFIX = "sk-gw-"
VISIBLE = 12


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    key: str
    prefix: str
    key_hash: str


def new_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(
        id="key_" + secrets.token_hex(8), key=key, prefix=key[:VISIBLE], key_hash=hash_key(key)
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def check_admin(expected: str | None, header: str | None, keys: Authenticator) -> None:
    """Raises unless ``header`` carries the admin key (compared in constant time).

    401 when the key is missing or simply wrong; 403 when it is a valid user key (known, but
    not allowed here) or when the admin API is disabled. ``keys`` tells a user key apart.
    """
    token = bearer(header)
    if token is None:
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin key>'")
    if expected is None:
        raise Forbidden("the admin API is disabled: GATEWAY_ADMIN_KEY is not set")
    if hmac.compare_digest(token.encode(), expected.encode()):
        return
    if await keys.is_user_key(token):
        raise Forbidden("this key may not use the admin API")
    raise Unauthorized("Incorrect admin key provided.")


class Authenticator:
    """Caches positive and negative lookups for ``ttl`` seconds; ``forget`` drops one at once.

    The key comes with its owner (disabled, user limits and models) and its own limits,
    models and expiry, all in the one cached read: a PATCH of any of them takes effect in the
    process that made it at once and in every other within ``ttl`` (GATEWAY_AUTH_CACHE_TTL)."""

    def __init__(self, directory: Directory, *, ttl: float) -> None:
        self._directory = directory
        self._ttl = ttl
        self._cache: dict[str, tuple[tuple[ApiKey, User] | None, float]] = {}

    async def authenticate(self, header: str | None) -> ApiKey:
        return (await self.caller(header))[0]

    async def caller(self, header: str | None) -> tuple[ApiKey, User]:
        """The key and its owner (balance as read, possibly stale: never use it)."""
        token = bearer(header)
        if token is None:
            raise Unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            found = cached[0]
        else:
            try:
                found = await self._directory.find_key(digest)
            except Exception as exc:
                # Database down: a key we already knew keeps working (admission and
                # settlement do not need the database); an unknown one cannot be checked.
                if cached is not None and cached[0] is not None:
                    return self._check(cached[0])
                raise Unavailable("cannot verify API keys right now; retry shortly") from exc
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (found, now + self._ttl)
        return self._check(found)

    async def is_user_key(self, token: str) -> bool:
        """Whether ``token`` is a usable gateway key (False when it cannot be checked now)."""
        try:
            await self.authenticate(f"Bearer {token}")
        except GatewayError:
            return False
        return True

    def _check(self, found: tuple[ApiKey, User] | None) -> tuple[ApiKey, User]:
        if found is None:
            raise Unauthorized("Incorrect API key provided.")
        key = found[0]
        if key.revoked_at is not None:
            raise Unauthorized("This API key has been revoked.", code="revoked_api_key")
        if not key.usable(utcnow()):
            raise Unauthorized("This API key has expired.", code="expired_api_key")
        return found

    def forget(self, key_id: str | None = None, *, user_id: str | None = None) -> None:
        """Drops the cached lookups of a key, or of every key of ``user_id``."""
        for digest, (found, _) in list(self._cache.items()):
            if found is not None and (found[0].id == key_id or found[0].user_id == user_id):
                del self._cache[digest]
