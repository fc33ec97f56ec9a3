"""The values one proxied call passes along (``gateway.proxy.pipeline``): the admitted
``Call``, and the ``Outcome`` its relay came to, with the ``Reply`` still to send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.catalog import Model
from gateway.endpoints import Endpoint
from gateway.listeners import Header
from gateway.proxy.attribution import NONE as NO_ATTRIBUTION
from gateway.proxy.attribution import Attribution
from gateway.proxy.sse import StreamMeter
from gateway.proxy.stream_hold import StreamHold
from gateway.quotes import Quote
from gateway.records import ApiKey
from gateway.routing import Plan
from gateway.usage_dialects import NormalizedUsage


@dataclass(slots=True)
class Call:
    request_id: str
    endpoint: Endpoint
    started: float
    key: ApiKey
    model: Model
    quote: Quote
    # The request as forwarded (upstream model name, stream_options); encoded when sent.
    payload: dict[str, Any]
    stream: bool
    hide_usage_chunk: bool
    # Which deployment to try now, and after it (gateway.routing); the last one tried is the
    # one whose answer the call got.
    route: Plan
    # A stream reserved for a slice of its cap, grown as it produces (None: the whole cap).
    hold: StreamHold | None = None
    # Who and what the call is for (end user, tags, session), read at admission.
    attribution: Attribution = NO_ATTRIBUTION
    # The x-ratelimit-* of the key's own limits at admission, for a successful answer
    # (gateway.proxy.governance); empty when it has none.
    limit_headers: tuple[Header, ...] = ()
    # The caller's headers the endpoint forwards upstream (anthropic-version, -beta).
    upstream_headers: tuple[tuple[str, str], ...] = ()

    @property
    def reserved(self) -> int:
        """What the call holds now, nano-USD."""
        return self.hold.reserve if self.hold is not None else self.quote.reserve


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer, held back until the call is settled."""

    status: int
    body: bytes
    content_type: str
    # The upstream's headers the caller gets (gateway.proxy.relayed_headers).
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a relayed call came to, as settlement prices it.

    ``usage`` is what the upstream reported (normalized); what it leaves unknown is counted
    from the prompt and the produced text (``texts``, one per choice, of a whole answer, or
    what ``meter`` saw of a stream). ``billable`` is False when the upstream served nothing.
    ``reply`` is the answer still to send (None when it went out already: a stream, or
    nothing to send).
    """

    status: str
    billable: bool = True
    usage: NormalizedUsage | None = None
    texts: tuple[str, ...] = ()
    meter: StreamMeter | None = None
    reply: Reply | None = None


# What settles when relay raises instead of returning (a bug): the prompt, nothing produced.
INTERRUPTED = Outcome("interrupted")
