"""Log-in throttling: failed attempts counted per email and per client address.

Each scope (``email:<case-folded address>``, ``addr:<client address>``) may fail ``limit``
times within ``window`` seconds; the failure that reaches the limit locks the scope for
``lockout`` seconds, during which its log-ins are refused before any password is checked
(so a lock cannot be used to test passwords, and costs no argon2 time). Counters live in the
ledger database, so every gateway process shares them. A successful log-in clears its
email's counter, never the address's: an attacker holding one account cannot reset the
count of their guesses at others.

``SignupLimit`` bounds open sign-ups per client address the same way (scope
``signup:<address>``, the same tables): ``limit`` accepted sign-up forms per ``window``
seconds; the one that reaches the limit locks the address for a whole window. It is what
stands between a welcome credit and a script that makes up addresses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.errors import RateLimited
from gateway.ledger.logins import Logins


@dataclass(frozen=True)
class Throttle:
    per_email: int = 5
    per_address: int = 20
    window: float = 900.0
    lockout: float = 900.0

    def scopes(self, email_key: str, address: str | None) -> list[tuple[str, int]]:
        found = [(f"email:{email_key}", self.per_email)]
        if address:
            found.append((f"addr:{address}", self.per_address))
        return found

    async def check(
        self, logins: Logins, email_key: str, address: str | None, *, now: datetime
    ) -> None:
        """Raises ``RateLimited`` (429 with retry-after) while any scope is locked."""
        ends = await logins.lock_ends([s for s, _ in self.scopes(email_key, address)], now=now)
        if ends is not None:
            wait = max(1, math.ceil((ends - now).total_seconds()))
            raise RateLimited(
                f"too many failed log-ins: try again in {math.ceil(wait / 60)} minute(s)",
                type_="requests",
                headers=((b"retry-after", str(wait).encode()),),
            )

    async def failed(
        self, logins: Logins, email_key: str, address: str | None, *, now: datetime
    ) -> None:
        """Counts a failure in each scope; locks those that reached their limit."""
        since = now - timedelta(seconds=self.window)
        for scope, limit in self.scopes(email_key, address):
            if await logins.count_failure(scope, at=now, since=since) >= limit:
                await logins.lock(scope, until=now + timedelta(seconds=self.lockout))

    async def succeeded(self, logins: Logins, email_key: str) -> None:
        await logins.clear_failures(f"email:{email_key}")


@dataclass(frozen=True)
class SignupLimit:
    limit: int = 5
    window: float = 86400.0

    async def admit(self, logins: Logins, address: str | None, *, now: datetime) -> None:
        """Counts one sign-up from ``address``; raises ``RateLimited`` (429 with retry-after)
        when the address is locked or over its limit. ``limit`` 0 or no address: no limit."""
        if self.limit <= 0 or not address:
            return
        scope = f"signup:{address}"
        ends = await logins.lock_ends([scope], now=now)
        if ends is None:
            since = now - timedelta(seconds=self.window)
            count = await logins.count_failure(scope, at=now, since=since)
            if count >= self.limit:
                await logins.lock(scope, until=now + timedelta(seconds=self.window))
            if count <= self.limit:
                return
            ends = now + timedelta(seconds=self.window)
        wait = max(1, math.ceil((ends - now).total_seconds()))
        raise RateLimited(
            f"too many sign-ups from your network: try again in {_hours(wait)}, or ask the "
            "operator for an account",
            type_="requests",
            headers=((b"retry-after", str(wait).encode()),),
        )


def _hours(seconds: int) -> str:
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} minute(s)"
    return f"{math.ceil(seconds / 3600)} hour(s)"
