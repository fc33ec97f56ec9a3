"""The CLI's two ways to reach the gateway, giving the same answers.

- ``ApiOperator`` calls a running gateway's admin API (``GATEWAY_URL``, ``GATEWAY_ADMIN_KEY``).
  Use it whenever a gateway is running in embedded mode: its in-process balances then see
  every change at once.
- ``DirectOperator`` opens the database (and Redis in production) itself, through the same
  services the admin API uses.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from gateway.accounts import Accounts, entry_view
from gateway.admin.routes import key_view
from gateway.errors import GatewayError
from gateway.ledger import open_ledger
from gateway.services import metering
from gateway.settings import Settings
from gateway.web import usage_view

ACTOR = "cli"


class OperatorError(Exception):
    pass


class Operator(Protocol):
    async def call(self, action: str, **args: Any) -> Any: ...

    async def close(self) -> None: ...


class ApiOperator:
    ROUTES = {
        "create_user": ("POST", "/admin/users"),
        "get_user": ("GET", "/admin/users/{user_id}"),
        "create_key": ("POST", "/admin/users/{user_id}/keys"),
        "list_keys": ("GET", "/admin/users/{user_id}/keys"),
        "revoke_key": ("DELETE", "/admin/keys/{key_id}"),
        "add_credit": ("POST", "/admin/users/{user_id}/credits"),
        "usage": ("GET", "/admin/users/{user_id}/usage"),
    }

    def __init__(self, url: str, admin_key: str | None) -> None:
        if not admin_key:
            raise OperatorError("GATEWAY_ADMIN_KEY is needed to use the admin API (or --direct)")
        self._client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30,
                                         headers={"Authorization": f"Bearer {admin_key}"})

    async def call(self, action: str, **args: Any) -> Any:
        method, template = self.ROUTES[action]
        path_args = {k: args.pop(k) for k in ("user_id", "key_id") if k in args}
        path = template.format(**path_args)
        try:
            if method == "GET":
                response = await self._client.request(method, path, params=args)
            else:
                response = await self._client.request(method, path, json=args or None)
        except httpx.HTTPError as exc:
            raise OperatorError(f"cannot reach the gateway at {self._client.base_url}: {exc}") from exc
        data = response.json()
        if response.status_code >= 400:
            raise OperatorError(data.get("error", {}).get("message", response.text))
        return data

    async def close(self) -> None:
        await self._client.aclose()


class DirectOperator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._accounts: Accounts | None = None

    async def _open(self) -> Accounts:
        if self._accounts is None:
            ledger = await open_ledger(self._settings.database_url)
            store, _ = await metering(self._settings, ledger)
            self._accounts = Accounts(ledger, store)
        return self._accounts

    async def call(self, action: str, **args: Any) -> Any:
        accounts = await self._open()
        try:
            return await getattr(self, "_" + action)(accounts, **args)
        except GatewayError as exc:
            raise OperatorError(exc.message) from exc

    async def _create_user(self, a: Accounts, id: str | None = None, email: str | None = None,
                           initial_credit: str | None = None) -> Any:
        user = await a.create_user(user_id=id, email=email, initial_credit=initial_credit,
                                   actor=ACTOR)
        return await a.user_view(user)

    async def _get_user(self, a: Accounts, user_id: str) -> Any:
        return await a.user_view(await a.require_user(user_id))

    async def _create_key(self, a: Accounts, user_id: str, name: str | None = None) -> Any:
        fresh, record = await a.create_key(user_id, name=name, actor=ACTOR)
        return {"id": fresh.id, "key": fresh.key, "prefix": fresh.prefix, "name": record.name,
                "user_id": record.user_id}

    async def _list_keys(self, a: Accounts, user_id: str) -> Any:
        await a.require_user(user_id)
        return {"data": [key_view(k) for k in await a.ledger.list_keys(user_id)],
                "has_more": False}

    async def _revoke_key(self, a: Accounts, key_id: str) -> Any:
        return key_view(await a.revoke_key(key_id, actor=ACTOR))

    async def _add_credit(self, a: Accounts, user_id: str, amount: str,
                          reason: str | None = None) -> Any:
        entry = await a.add_credit(user_id, amount, reason=reason, actor=ACTOR)
        return {"entry": entry_view(entry),
                "user": await a.user_view(await a.require_user(user_id))}

    async def _usage(self, a: Accounts, user_id: str, limit: int = 50, offset: int = 0) -> Any:
        await a.require_user(user_id)
        rows, more = await a.ledger.list_usage(user_id, limit=limit, offset=offset)
        return {"data": [usage_view(r) for r in rows], "has_more": more}

    async def close(self) -> None:
        if self._accounts is not None:
            await self._accounts.store.close()
            await self._accounts.ledger.close()


__all__ = ["ApiOperator", "DirectOperator", "Operator", "OperatorError"]
