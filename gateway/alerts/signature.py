"""The ``x-gateway-signature`` header: Stripe's webhook signature scheme, under our name.

    x-gateway-signature: t=1714564800,v1=5257a869e7ec...(64 hex digits)

``t`` is the Unix time of the attempt; ``v1`` is the hex HMAC-SHA256, keyed with
GATEWAY_ALERT_WEBHOOK_SECRET, of the signed payload ``f"{t}.{raw body}"``. A receiver
recomputes it over the raw bytes it received (before any JSON parsing), compares in constant
time with every ``v1`` of the header (there may be several while a secret is rotated) and
refuses a ``t`` too far from its clock (replays). ``verify`` below is that check; it is also
what Stripe's libraries do (``stripe.WebhookSignature.verify_header`` accepts our header).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "x-gateway-signature"
SCHEME = "v1"
TOLERANCE = 300  # seconds, Stripe's default


class SignatureError(ValueError):
    pass


def compute(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute(secret, t, body)}"


def verify(
    body: bytes, header: str, secret: str, *, tolerance: int = TOLERANCE, now: float | None = None
) -> int:
    """Checks ``header`` against the raw ``body``; returns its timestamp or raises
    ``SignatureError``."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("no timestamp or no v1 signature in the header")
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("no v1 signature matches the body")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    return timestamp
