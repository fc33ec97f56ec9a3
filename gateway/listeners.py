"""What runs after each settlement: the SettlementListener port.

``gateway.services.build`` registers the listeners (metrics, the low-balance signal, auto
top-up) in ``Services.on_settled``; the proxy pipeline calls each once per settled call, in
order, and knows nothing else about them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.records import UsageRecord

Header = tuple[bytes, bytes]


class SettlementListener(Protocol):
    def __call__(self, record: UsageRecord, balance: int | None, /) -> Sequence[Header]:
        """Hears of one settled call.

        ``balance`` is the user's balance in nano-USD right after the debit of
        ``record.cost``, or None when the store reported none (the call was settled already,
        or its settlement was deferred or failed). Returns headers for the call's answer; only
        a non-streamed answer, whose headers wait for settlement, carries them.

        Runs on the hot path: synchronous and without I/O (slow work goes to a task). A
        listener that raises is logged and skipped; the settlement stands.
        """
        ...
