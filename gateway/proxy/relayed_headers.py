"""Which upstream response headers reach the caller: an allowlist, as data.

A client needs a few of the provider's headers to behave well: when to retry after a refusal
(``retry-after``, and ``retry-after-ms``, which the official OpenAI SDKs read first), the
rate-limit family (OpenAI's ``x-ratelimit-*``, platform.openai.com "Rate limits"; Anthropic's
``anthropic-ratelimit-*``; the IETF draft's ``ratelimit`` / ``ratelimit-policy`` and their
older ``ratelimit-*`` names), and the provider's request id for support tickets. The gateway's
own ``x-request-id`` names the usage record, so the provider's id goes out as
``x-upstream-request-id``, taken from the first source header present (OpenAI ``x-request-id``,
Anthropic ``request-id``, Azure ``apim-request-id`` / ``x-ms-request-id``, AWS
``x-amzn-requestid``).

Nothing else passes: not the provider's account headers (``openai-organization``,
``openai-project``, ``anthropic-organization-id``), and never a hop-by-hop header (RFC 9110
§7.6.1: ``Connection``, the fields it lists, ``Keep-Alive``, ``Proxy-*``, ``TE``,
``Trailer``, ``Transfer-Encoding``, ``Upgrade``), even one the allowlist would name. Values
are scrubbed of the provider key (``gateway.proxy.scrub``).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.listeners import Header
from gateway.proxy.scrub import Secret

RELAYED_NAMES = frozenset({b"retry-after", b"retry-after-ms", b"ratelimit", b"ratelimit-policy"})
RELAYED_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-", b"ratelimit-")
REQUEST_ID_SOURCES = (
    b"x-request-id",
    b"request-id",
    b"apim-request-id",
    b"x-ms-request-id",
    b"x-amzn-requestid",
)
UPSTREAM_REQUEST_ID = b"x-upstream-request-id"
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def relayed_headers(
    raw: Iterable[tuple[bytes, bytes]], secret: Secret | None = None
) -> tuple[Header, ...]:
    """The headers to add to the caller's answer, from the upstream's raw response headers
    (aiohttp's ``ClientResponse.raw_headers``: names as sent, values as bytes)."""
    found: list[Header] = []
    sources: list[Header] = []
    hop: frozenset[bytes] = HOP_BY_HOP
    for name, value in raw:
        lower = name.lower()
        if lower == b"connection":
            hop = hop | {token.strip().lower() for token in value.split(b",")}
        elif lower in RELAYED_NAMES or lower.startswith(RELAYED_PREFIXES):
            found.append((lower, value))
        elif lower in REQUEST_ID_SOURCES:
            sources.append((lower, value))
    # Fields a Connection header lists are hop-by-hop wherever it stands among the headers.
    out = [(n, v) for n, v in found if n not in hop and not n.startswith(b"proxy-")]
    ids = [(REQUEST_ID_SOURCES.index(n), v) for n, v in sources if n not in hop]
    if ids:
        out.append((UPSTREAM_REQUEST_ID, min(ids, key=lambda found: found[0])[1]))
    if secret is not None:
        out = [(n, secret.scrub(v)) for n, v in out]
    return tuple(out)
