"""A caller's own keys, authenticated by a gateway key: list, create, read (with the counters
of its limits), change, rotate and revoke. The same services and views as the admin actions,
on keys of the caller's user only (another user's key id is a 404)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import keys, views
from gateway.accounts import Accounts
from gateway.actions import key_detail
from gateway.records import ApiKey
from gateway.web import json_response, read_json, services_of


def my_key_routes() -> list[Route]:
    return [
        Route("/me/keys", list_keys, methods=["GET"]),
        Route("/me/keys", create_key, methods=["POST"]),
        Route("/me/keys/{key_id}", get_key, methods=["GET"]),
        Route("/me/keys/{key_id}", update_key, methods=["PATCH"]),
        Route("/me/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/me/keys/{key_id}/rotate", rotate_key, methods=["POST"]),
    ]


async def _caller(request: Request) -> tuple[Accounts, ApiKey, str]:
    services = services_of(request)
    key = await services.auth.authenticate(request.headers.get("authorization"))
    accounts = Accounts(services.ledger, services.store, services.auth)
    return accounts, key, f"user:{key.user_id}"


async def list_keys(request: Request) -> Response:
    accounts, key, _ = await _caller(request)
    return json_response(views.keys_view(await accounts.ledger.directory.list_keys(key.user_id)))


async def create_key(request: Request) -> Response:
    accounts, key, actor = await _caller(request)
    params = await read_json(request)
    fresh, record = await keys.create_key(accounts, key.user_id, params, actor=actor)
    return json_response(views.new_key_view(record, fresh.key), 201)


async def get_key(request: Request) -> Response:
    accounts, key, _ = await _caller(request)
    own = await keys.require_key(accounts, request.path_params["key_id"], user_id=key.user_id)
    return json_response(await key_detail(accounts, own))


async def update_key(request: Request) -> Response:
    accounts, key, actor = await _caller(request)
    own = await keys.require_key(accounts, request.path_params["key_id"], user_id=key.user_id)
    params = await read_json(request)
    return json_response(
        await key_detail(accounts, await keys.update_key(accounts, own.id, params, actor=actor))
    )


async def rotate_key(request: Request) -> Response:
    accounts, key, actor = await _caller(request)
    own = await keys.require_key(accounts, request.path_params["key_id"], user_id=key.user_id)
    fresh, new, old = await keys.rotate_key(accounts, own.id, await read_json(request), actor=actor)
    return json_response(
        {**views.new_key_view(new, fresh.key), "replaces": views.key_view(old)}, 201
    )


async def revoke_key(request: Request) -> Response:
    accounts, key, actor = await _caller(request)
    own = await keys.require_key(accounts, request.path_params["key_id"], user_id=key.user_id)
    return json_response(views.key_view(await accounts.revoke_key(own.id, actor=actor)))
