"""Password hashing: argon2id (argon2-cffi), verified off the event loop.

A hash is a PHC string that names its own parameters, so raising them later is safe: a
stored hash made with weaker ones still verifies, and ``needs_rehash`` tells the log-in to
store a fresh hash (accounts.py). Passwords are never logged, stored or echoed.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import Unprocessable

MIN_LENGTH = 8
# argon2 hashes any length, but a megabyte of password per log-in is a cheap way to burn CPU.
MAX_LENGTH = 256


class Passwords:
    """argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile) unless given."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when an email is unknown, so a log-in takes as long either way
        # and its timing does not tell which addresses have accounts.
        self._dummy = self._hasher.hash("not a password of anyone")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: no such login, checked against a
        dummy hash all the same)."""
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def check_password(password: object, *, param: str = "password") -> str:
    """A new password: a string of MIN_LENGTH..MAX_LENGTH characters, else 422 naming
    ``param``."""
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Unprocessable(
            f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters",
            param=param,
            code="invalid_password",
        )
    return password
