"""How the CLI reaches the gateway to run an action of gateway/actions.py, two ways with the
same answers.

- ``ApiTransport`` sends the action to a running gateway's admin API (``GATEWAY_URL``,
  ``GATEWAY_ADMIN_KEY``) at the action's ``method`` and ``path``. Use it whenever a gateway
  runs in embedded mode: its in-process balances then see every change at once.
- ``DirectTransport`` opens the database (and Redis in production) itself and calls the
  action's ``run``: the very function the admin route calls, with the same string
  parameters, so parsing, validation and answers are identical.

``path`` values fill the route; ``params`` go to the query string (GET, DELETE) or the JSON
body. Either way a failure is a ``CommandError`` whose message is the one the API gives.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Protocol

import httpx

from gateway.accounts import Accounts
from gateway.actions import ACTIONS, ActionContext
from gateway.errors import GatewayError
from gateway.ledger import open_ledger
from gateway.metering.modes import open_metering
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.views import Json


class CommandError(Exception):
    """An action the gateway refused or could not be reached for; the message says why."""


def login() -> str:
    """Who runs the CLI, for the audit trail (best effort: containers may have no user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Transport(Protocol):
    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Json: ...

    async def close(self) -> None: ...


class ApiTransport:
    def __init__(self, url: str, admin_key: str | None) -> None:
        if not admin_key:
            raise CommandError("GATEWAY_ADMIN_KEY is needed to use the admin API (or --direct)")
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=30,
            headers={"Authorization": f"Bearer {admin_key}", "X-Gateway-Actor": login()},
        )

    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Json:
        route = ACTIONS[action]
        url = route.path.format(**path)
        try:
            if route.method in ("GET", "DELETE"):
                response = await self._client.request(route.method, url, params=params)
            else:
                response = await self._client.request(route.method, url, json=params)
        except httpx.HTTPError as exc:
            raise CommandError(
                f"cannot reach the gateway at {self._client.base_url}: {exc}"
            ) from exc
        try:
            data = response.json()
        except ValueError as exc:
            raise CommandError(
                f"{response.status_code} from the gateway: {response.text[:200]}"
            ) from exc
        if response.status_code >= 400 or not isinstance(data, dict):
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise CommandError(error.get("message", response.text))
        return data

    async def close(self) -> None:
        await self._client.aclose()


class DirectTransport:
    def __init__(self, settings: Settings, *, default_database: bool = False) -> None:
        """``default_database``: GATEWAY_DATABASE_URL was not set, so the database is the
        default ``./gateway.db``; it must exist (opening would create an empty ledger and
        answer from it). A database named explicitly may be new: --direct creates it."""
        path = settings.database_url.removeprefix("sqlite:///")
        if default_database and not Path(path).exists():
            raise CommandError(
                f"--direct: no database at {path}; set GATEWAY_DATABASE_URL to the gateway's"
                " (or run from its directory)"
            )
        self._settings = settings
        self._accounts: Accounts | None = None
        self._actor = f"cli:{login()}"

    async def _open(self) -> Accounts:
        if self._accounts is None:
            ledger = await open_ledger(self._settings.database_url)
            store = (await open_metering(self._settings, ledger, Metrics())).store
            self._accounts = Accounts(ledger, store)
        return self._accounts

    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Json:
        context = ActionContext(await self._open(), self._actor)
        try:
            return await ACTIONS[action].run(context, path, params)
        except GatewayError as exc:
            raise CommandError(exc.message) from exc

    async def close(self) -> None:
        if self._accounts is not None:
            await self._accounts.store.close()
            await self._accounts.ledger.close()
