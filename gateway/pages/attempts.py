"""Sign-in attempts limited per client: after ``limit`` failures within ``window`` seconds a
client is refused (even with the right credentials) until the oldest failure ages out.

Held in the process's memory, on the app (``for_app``): with several workers each counts its
own, which still bounds guessing to ``limit`` x workers per window. A success clears the
client's failures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request

MAX_CLIENTS = 10_000  # beyond this the oldest clients' failures are forgotten


class Attempts:
    def __init__(
        self, *, limit: int = 5, window: float = 900.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            return 0.0
        return max(failures[0] + self.window - self._clock(), 0.0)

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self._clock())
        self._failures.pop(client, None)
        self._failures[client] = failures  # re-inserted: the dict stays oldest-first
        while len(self._failures) > MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def client_of(request: Request) -> str:
    """The client's address (uvicorn puts the proxy's forwarded one here when trusted)."""
    return request.client.host if request.client else "unknown"


def for_app(request: Request, name: str) -> Attempts:
    """The app's ``Attempts`` called ``name`` (e.g. "operator", "portal"), made on first use."""
    state = request.app.state
    registry: dict[str, Attempts] | None = getattr(state, "sign_in_attempts", None)
    if registry is None:
        registry = state.sign_in_attempts = {}
    return registry.setdefault(name, Attempts())
