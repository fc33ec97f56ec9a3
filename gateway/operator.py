"""The CLI's two ways to reach the gateway, giving the same answers.

- ``ApiOperator`` calls a running gateway's admin API (``GATEWAY_URL``, ``GATEWAY_ADMIN_KEY``).
  Use it whenever a gateway is running in embedded mode: its in-process balances then see
  every change at once.
- ``DirectOperator`` opens the database (and Redis in production) itself and calls the very
  functions the admin routes call (gateway.accounts, gateway.admin.reports), with the same
  string parameters, so parsing, validation and answers are identical.

Every action is named once in ``ACTIONS`` with its HTTP route; ``path`` values fill the route,
``params`` go to the query string (GET) or the JSON body.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gateway import prices
from gateway.accounts import Accounts, bulk_view, key_view, money_view, new_key_view
from gateway.admin import reports
from gateway.errors import GatewayError
from gateway.ledger import open_ledger
from gateway.services import metering
from gateway.settings import Settings
from gateway.web import optional_str


class OperatorError(Exception):
    pass


@dataclass(frozen=True)
class Route:
    method: str
    path: str


ACTIONS: dict[str, Route] = {
    "create_user": Route("POST", "/admin/users"),
    "get_user": Route("GET", "/admin/users/{user_id}"),
    "create_key": Route("POST", "/admin/users/{user_id}/keys"),
    "list_keys": Route("GET", "/admin/users/{user_id}/keys"),
    "revoke_key": Route("DELETE", "/admin/keys/{key_id}"),
    "add_credit": Route("POST", "/admin/users/{user_id}/credits"),
    "set_balance": Route("PUT", "/admin/users/{user_id}/balance"),
    "bulk_credit": Route("POST", "/admin/credits/bulk"),
    "usage": Route("GET", "/admin/users/{user_id}/usage"),
    "stats": Route("GET", "/admin/users/{user_id}/stats"),
    "revenue": Route("GET", "/admin/reports/revenue"),
    "models_report": Route("GET", "/admin/reports/models"),
    "top_users": Route("GET", "/admin/reports/top-users"),
    "audit": Route("GET", "/admin/audit"),
    "list_models": Route("GET", "/admin/models"),
    "reload_models": Route("POST", "/admin/models/reload"),
}


def login() -> str:
    """Who runs the CLI, for the audit trail (best effort: containers may have no user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Operator(Protocol):
    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Any: ...

    async def close(self) -> None: ...


class ApiOperator:
    def __init__(self, url: str, admin_key: str | None) -> None:
        if not admin_key:
            raise OperatorError("GATEWAY_ADMIN_KEY is needed to use the admin API (or --direct)")
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=30,
            headers={"Authorization": f"Bearer {admin_key}", "X-Gateway-Actor": login()},
        )

    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Any:
        route = ACTIONS[action]
        url = route.path.format(**path)
        try:
            if route.method in ("GET", "DELETE"):
                response = await self._client.request(route.method, url, params=params)
            else:
                response = await self._client.request(route.method, url, json=params)
        except httpx.HTTPError as exc:
            raise OperatorError(
                f"cannot reach the gateway at {self._client.base_url}: {exc}"
            ) from exc
        try:
            data = response.json()
        except ValueError as exc:
            raise OperatorError(
                f"{response.status_code} from the gateway: {response.text[:200]}"
            ) from exc
        if response.status_code >= 400:
            raise OperatorError(data.get("error", {}).get("message", response.text))
        return data

    async def close(self) -> None:
        await self._client.aclose()


Handler = Callable[[Accounts, dict[str, str], dict[str, Any]], Awaitable[Any]]


class DirectOperator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._accounts: Accounts | None = None
        self._actor = f"cli:{login()}"

    async def _open(self) -> Accounts:
        if self._accounts is None:
            ledger = await open_ledger(self._settings.database_url)
            store, _ = await metering(self._settings, ledger)
            self._accounts = Accounts(ledger, store)
        return self._accounts

    async def call(self, action: str, path: dict[str, str], params: dict[str, Any]) -> Any:
        handler: Handler = getattr(self, "_" + action)
        accounts = await self._open()
        try:
            return await handler(accounts, path, params)
        except GatewayError as exc:
            raise OperatorError(exc.message) from exc

    async def _create_user(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        user = await a.create_user(
            user_id=optional_str(p, "id"),
            email=optional_str(p, "email"),
            initial_credit=p.get("initial_credit"),
            actor=self._actor,
        )
        return await a.user_view(user)

    async def _get_user(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return await a.user_view(await a.require_user(path["user_id"]))

    async def _create_key(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        fresh, record = await a.create_key(
            path["user_id"], name=optional_str(p, "name"), actor=self._actor
        )
        return new_key_view(fresh, record)

    async def _list_keys(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        user = await a.require_user(path["user_id"])
        keys = await a.ledger.directory.list_keys(user.id)
        return {"data": [key_view(k) for k in keys], "has_more": False}

    async def _revoke_key(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return key_view(await a.revoke_key(path["key_id"], actor=self._actor))

    async def _add_credit(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        entry = await a.add_credit(
            path["user_id"], p.get("amount"), reason=optional_str(p, "reason"), actor=self._actor
        )
        return await money_view(a, path["user_id"], entry)

    async def _set_balance(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        entry = await a.set_balance(
            path["user_id"], p.get("balance"), reason=optional_str(p, "reason"), actor=self._actor
        )
        return await money_view(a, path["user_id"], entry)

    async def _bulk_credit(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return bulk_view(
            await a.bulk_credit(
                p.get("user_ids"),
                p.get("amount"),
                reason=optional_str(p, "reason"),
                actor=self._actor,
            )
        )

    async def _usage(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        user = await a.require_user(path["user_id"])
        return await reports.usage_page(a.ledger, user.id, p)

    async def _stats(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        user = await a.require_user(path["user_id"])
        return await reports.stats(a.ledger, user.id, p)

    async def _revenue(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return await reports.revenue(a.ledger, p)

    async def _models_report(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return await reports.models(a.ledger, p)

    async def _top_users(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return await reports.top_users(a.ledger, p)

    async def _audit(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return await reports.audit(a.ledger, p)

    async def _list_models(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        return prices.book_view(await a.ledger.reports.list_prices())

    async def _reload_models(self, a: Accounts, path: dict[str, str], p: dict[str, Any]) -> Any:
        raise OperatorError(
            "a reload acts on a running gateway's memory: drop --direct to use its admin API, "
            "or send it SIGHUP (kill -HUP <pid>)"
        )

    async def close(self) -> None:
        if self._accounts is not None:
            await self._accounts.store.close()
            await self._accounts.ledger.close()


__all__ = ["ACTIONS", "ApiOperator", "DirectOperator", "Operator", "OperatorError"]
