"""The credit hold of a stream admitted for a slice of its cap, grown as the stream produces.

An uncapped stream whose worst case the balance cannot cover (``GATEWAY_UNCAPPED_CALLS=fit``)
is forwarded with the largest cap the balance covers, but reserved for a first slice of it
(``GATEWAY_STREAM_HOLD_TOKENS``), so the user's other calls can still be admitted. Before each
piece of the stream is forwarded, ``StreamHold.cover`` checks that the hold covers an upper
bound of the output produced so far, and grows it when not (re-admitting the request id, one
atomic step in either balance store: ``balance - reserved >= 0`` always holds). When the
balance cannot cover that piece, it is not forwarded: the stream ends with an error event in
the endpoint's shape (``gateway.proxy.stream_errors``), the upstream connection is closed, and
the call is billed for the prompt and the output forwarded (``texts``), which the hold
covered.

The bound: a byte-level BPE token (every OpenAI-compatible tokenizer the gateway meets) decodes
to at least one byte, so the UTF-8 bytes of the text, reasoning and tool-call arguments
forwarded bound the tokens that produced them. Output billed but not streamed as text (hidden
reasoning, audio) has no such bound, and the balance that covered the cap at admission may be
spent by the user's other calls meanwhile: such streams are not sliced (``shows_all_output``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gateway.endpoints import Endpoint
from gateway.metering.quota import Quota
from gateway.metering.store import Admission, BalanceStore
from gateway.pricing import Price
from gateway.proxy.sse import payloads
from gateway.proxy.stream_errors import CREDIT_EXHAUSTED, stream_error
from gateway.proxy.usage import Piece, by_choice, output_pieces
from gateway.quotes import Quote

log = logging.getLogger("gateway.stream_hold")


class StreamHold:
    """One stream's growing hold. ``reserve`` is what it holds now (nano-USD), ``held`` the
    output tokens that covers (all choices together), at most ``cap``."""

    def __init__(
        self,
        store: BalanceStore,
        quote: Quote,
        price: Price,
        *,
        user_id: str,
        request_id: str,
        ttl: float,
        quotas: tuple[Quota, ...] = (),
    ) -> None:
        assert quote.output_held is not None
        # The key's and user's quotas grow with the hold: a budget can end a stream too.
        self._quotas = quotas
        self._store = store
        self._price = price
        self._quote = quote
        self._input = quote.input_tokens
        self._user = user_id
        self._request = request_id
        self._ttl = ttl
        self.cap = quote.cap
        self.held = quote.output_held
        self.reserve = quote.reserve
        # Grows by the first slice at least, else doubles: a long answer asks O(log n) times.
        self._step = quote.output_held
        self.bound = 0
        self._pieces: list[Piece] = []
        self.sequence_number = -1  # the last Responses event's, so the refusal follows it

    async def cover(self, chunk: bytes) -> bool:
        """Whether ``chunk`` (whole events, as ``StreamMeter.feed`` returns them) may be
        forwarded: True when the hold covers the output bound with it, grown if needed."""
        pieces: list[Piece] = []
        sequence_number = self.sequence_number
        for data in payloads(chunk):
            obj = _load(data)
            pieces.extend(output_pieces(obj))
            if isinstance(obj, dict) and isinstance(obj.get("sequence_number"), int):
                sequence_number = obj["sequence_number"]
        bound = self.bound + sum(len(text.encode()) for _, text in pieces)
        if min(bound, self.cap) > self.held and not await self._grow(min(bound, self.cap)):
            return False
        self.bound = bound
        self.sequence_number = sequence_number
        self._pieces.extend(pieces)
        return True

    def texts(self) -> list[str]:
        """The output forwarded, one string per choice (what the call is billed for)."""
        return by_choice(self._pieces)

    async def _grow(self, need: int) -> bool:
        want = min(self.cap, max(need + self._step, 2 * self.held))
        admission = await self._admit(want)
        if admission is not None and not admission.ok:
            most = min(
                self._quote.affordable(self._price, admission.available),
                self.cap,
            )
            if most < need:
                return False
            want = most
            admission = await self._admit(want)
        if admission is None or not admission.ok:
            return False
        self.held = want
        self.reserve = self._quote.bound(self._price, want)
        return True

    async def _admit(self, tokens: int) -> Admission | None:
        amount = self._quote.bound(self._price, tokens)
        # Settlement drops this request's hold; a re-admission still in flight when the client
        # leaves must land before it, or it would pin the balance until its ttl.
        admitting = (
            self._store.admit(
                self._user,
                self._request,
                amount,
                ttl=self._ttl,
                quotas=self._quotas,
                tokens=self._input + tokens,
            )
            if self._quotas
            else self._store.admit(self._user, self._request, amount, ttl=self._ttl)
        )
        task = asyncio.ensure_future(admitting)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            raise
        except Exception as exc:  # the store is unreachable: ending the stream is the safe side
            log.warning("could not grow the hold of %s: %r", self._request, exc)
            return None

    def refusal(self, endpoint: Endpoint) -> bytes:
        """The events that end this stream when the balance no longer covers it."""
        return stream_error(endpoint, CREDIT_EXHAUSTED, self.sequence_number + 1)


# Request fields that make the output include what a stream does not show as text: audio
# (chat ``modalities``/``audio``) and reasoning summaries or effort (hidden reasoning).
_HIDDEN_OUTPUT_FIELDS = ("audio", "reasoning_effort", "reasoning")


def shows_all_output(payload: dict[str, Any], *, hidden_reasoning: bool) -> bool:
    """Whether every output token the call may bill streams as text the hold can bound: not
    on a model that reasons unseen (``hidden_reasoning`` in models.yaml), nor when the request
    asks for audio or sets reasoning (OpenAI chat ``modalities``/``audio``,
    ``reasoning_effort``; Responses ``reasoning``). Such streams hold their whole cap."""
    if hidden_reasoning or any(payload.get(f) is not None for f in _HIDDEN_OUTPUT_FIELDS):
        return False
    modalities = payload.get("modalities")
    return not (isinstance(modalities, list) and "audio" in modalities)


def _load(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
