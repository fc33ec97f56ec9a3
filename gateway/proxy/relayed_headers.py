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


# What a header name is to the relay (skipped, relayed, the Connection field, or from 0 up a
# request id source of that rank), with the name lowercased. Memoized per name as sent:
# providers send the same few dozen names on every answer, so one dict lookup replaces
# lowercasing and matching (OpenAI's two dozen headers: ~3 us instead of ~6). A pure cache,
# bounded so that an upstream inventing names cannot grow it without end.
_SKIP, _RELAY, _CONNECTION = -1, -2, -3
_KINDS: dict[bytes, tuple[int, bytes]] = {}
_KINDS_KEPT = 4096
# Connection values that list no field.
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})


def _kind(name: bytes) -> tuple[int, bytes]:
    lower = name.lower()
    if lower == b"connection":
        kind = _CONNECTION
    elif lower in HOP_BY_HOP or lower.startswith(b"proxy-"):
        kind = _SKIP
    elif lower in RELAYED_NAMES or lower.startswith(RELAYED_PREFIXES):
        kind = _RELAY
    elif lower in REQUEST_ID_SOURCES:
        kind = REQUEST_ID_SOURCES.index(lower)
    else:
        kind = _SKIP
    if len(_KINDS) < _KINDS_KEPT:
        _KINDS[name] = (kind, lower)
    return kind, lower


def relayed_headers(
    raw: Iterable[tuple[bytes, bytes]], secret: Secret | None = None
) -> tuple[Header, ...]:
    """The headers to add to the caller's answer, from the upstream's raw response headers
    (aiohttp's ``ClientResponse.raw_headers``: names as sent, values as bytes)."""
    kinds = _KINDS
    out: list[Header] = []
    ids: list[tuple[int, bytes, bytes]] = []
    listed: set[bytes] = set()
    for name, value in raw:
        kind, lower = kinds.get(name) or _kind(name)
        if kind == _SKIP:
            continue
        if kind == _RELAY:
            out.append((lower, value))
        elif kind == _CONNECTION:
            if value not in _PLAIN_CONNECTION:
                listed.update(token.strip().lower() for token in value.split(b","))
        else:
            ids.append((kind, lower, value))
    if listed:
        # Fields a Connection header lists are hop-by-hop wherever it stands.
        out = [(n, v) for n, v in out if n not in listed]
        ids = [found for found in ids if found[1] not in listed]
    if ids:
        out.append((UPSTREAM_REQUEST_ID, min(ids, key=lambda found: found[0])[2]))
    if secret is not None:
        marker = secret.marker
        out = [(n, secret.scrub(v) if marker in v else v) for n, v in out]
    return tuple(out)
