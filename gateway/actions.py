"""Operator actions: one table from which the admin API and the CLI are both built.

``ACTIONS`` names each action once, with its HTTP method, its path and the function that
performs it:

- gateway/routes/admin.py generates the admin router from the table, one route per row;
- the CLI's API transport sends ``method`` to ``path``; its ``--direct`` transport calls
  ``run`` itself, on the database;
- the CLI's commands and text tables refer to rows by name.

Both ways therefore run the same function on the same parameters: parsing, validation,
answers and errors cannot drift apart. A new operator command is one service method and one
row here (plus its argparse lines).

``run(context, path, params)`` returns the JSON answer. ``path`` fills the ``{names}`` of the
route; ``params`` is the query string for GET and DELETE (strings, as the CLI sends them too)
or the JSON body otherwise (numbers as ``Decimal``, never float). Amounts are USD decimal
strings in and out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import keys, reports, usage_prune, views
from gateway.accounts import Accounts, BulkApplied, caller_reference, own_reference
from gateway.alerts import listing
from gateway.errors import BadRequest
from gateway.portal import invites, login_links
from gateway.price_reload import price_rows, reload
from gateway.records import ApiKey, Entry, User
from gateway.views import Json
from gateway.web import optional_str

if TYPE_CHECKING:
    from gateway.services import Services

Path = Mapping[str, str]
Params = Mapping[str, Any]


@dataclass(frozen=True)
class ActionContext:
    """What an action works with, and on whose behalf.

    ``actor`` is the audit trail's name for who acts (``admin``, ``admin:<login>``,
    ``cli:<login>``). ``gateway`` is the running gateway's services when the action arrives
    through the admin API, and None when the CLI opened the database itself (``--direct``):
    such a process holds no catalog in memory and no in-process balances of its own.
    """

    accounts: Accounts
    actor: str
    gateway: Services | None = None


Run = Callable[[ActionContext, Path, Params], Awaitable[Json]]


@dataclass(frozen=True)
class Action:
    method: str
    path: str
    run: Run
    status: int = 200  # of a success over HTTP


# -- users and keys ------------------------------------------------------------------------


async def create_user(ctx: ActionContext, path: Path, params: Params) -> Json:
    user = await ctx.accounts.create_user(
        user_id=optional_str(params, "id"),
        email=optional_str(params, "email"),
        initial_credit=params.get("initial_credit"),
        actor=ctx.actor,
    )
    return await _user_view(ctx, user, committed=True)


async def list_users(ctx: ActionContext, path: Path, params: Params) -> Json:
    """Newest first; ``query`` keeps ids or emails containing it (any case); ``cursor`` (from
    ``next_cursor``) pages without skips or repeats while users are created."""
    limit = reports.int_param(params, "limit", 50, 1, 200)
    query = optional_str(params, "query") or None
    if query is not None and len(query) > 256:
        raise BadRequest("query: at most 256 characters", param="query", code="invalid_parameter")
    raw = optional_str(params, "cursor")
    after = None
    if raw:
        cursor = reports.decode_cursor(raw)
        after = (cursor.created_at, cursor.request_id)
    users, more = await ctx.accounts.ledger.directory.list_users(
        query=query, after=after, limit=limit
    )
    last = users[-1] if more and users else None
    return {
        "data": [await _user_view(ctx, u) for u in users],
        "has_more": more,
        "next_cursor": reports.encode_position(last.created_at, last.id) if last else None,
    }


async def get_user(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await _user_view(ctx, await ctx.accounts.require_user(path["user_id"]))


async def create_key(ctx: ActionContext, path: Path, params: Params) -> Json:
    fresh, record = await keys.create_key(ctx.accounts, path["user_id"], params, actor=ctx.actor)
    return views.new_key_view(record, fresh.key)


async def get_key(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await key_detail(ctx.accounts, await keys.require_key(ctx.accounts, path["key_id"]))


async def update_key(ctx: ActionContext, path: Path, params: Params) -> Json:
    updated = await keys.update_key(ctx.accounts, path["key_id"], params, actor=ctx.actor)
    return await key_detail(ctx.accounts, updated)


async def rotate_key(ctx: ActionContext, path: Path, params: Params) -> Json:
    fresh, new, old = await keys.rotate_key(ctx.accounts, path["key_id"], params, actor=ctx.actor)
    return {**views.new_key_view(new, fresh.key), "replaces": views.key_view(old)}


async def update_user(ctx: ActionContext, path: Path, params: Params) -> Json:
    user = await keys.update_user(ctx.accounts, path["user_id"], params, actor=ctx.actor)
    return await _user_view(ctx, user)


async def key_detail(accounts: Accounts, key: ApiKey) -> Json:
    """A key with the counters of its limits now (``usage``: None when it has none)."""
    found = await keys.limit_usage(accounts, key.user_id, f"k:{key.id}", key.limits)
    usage = None
    if found is not None:
        u, resets = found
        usage = views.limit_usage_view(
            u.spent,
            u.reserved,
            u.requests,
            u.tokens,
            u.in_flight,
            resets.isoformat() if resets else None,
        )
    return {**views.key_view(key), "usage": usage}


async def list_keys(ctx: ActionContext, path: Path, params: Params) -> Json:
    user = await ctx.accounts.require_user(path["user_id"])
    return views.keys_view(await ctx.accounts.ledger.directory.list_keys(user.id))


async def revoke_key(ctx: ActionContext, path: Path, params: Params) -> Json:
    return views.key_view(await ctx.accounts.revoke_key(path["key_id"], actor=ctx.actor))


# -- balances ------------------------------------------------------------------------------


async def add_credit(ctx: ActionContext, path: Path, params: Params) -> Json:
    entry = await ctx.accounts.add_credit(
        path["user_id"],
        params.get("amount"),
        reason=optional_str(params, "reason"),
        actor=ctx.actor,
        reference=own_reference(params.get("reference")),
    )
    return await _money_view(ctx, path["user_id"], entry)


async def set_balance(ctx: ActionContext, path: Path, params: Params) -> Json:
    entry = await ctx.accounts.set_balance(
        path["user_id"],
        params.get("balance"),
        reason=optional_str(params, "reason"),
        actor=ctx.actor,
        reference=own_reference(params.get("reference")),
    )
    return await _money_view(ctx, path["user_id"], entry)


async def bulk_credit(ctx: ActionContext, path: Path, params: Params) -> Json:
    results = await ctx.accounts.bulk_credit(
        params.get("user_ids"),
        params.get("amount"),
        reason=optional_str(params, "reason"),
        actor=ctx.actor,
        reference=caller_reference(params.get("reference")),
    )
    return views.bulk_view(
        [
            views.bulk_applied(r.user_id, r.entry, r.balance, r.reserved)
            if isinstance(r, BulkApplied)
            else views.bulk_failed(r.user_id, r.error.code, r.error.message)
            for r in results
        ]
    )


async def _user_view(ctx: ActionContext, user: User, *, committed: bool = False) -> Json:
    """``committed``: the answer to a money move the ledger holds already, which must not fail
    on the balance store (its balance then comes from the ledger, ``reserved`` None)."""
    read = ctx.accounts.balance_after if committed else ctx.accounts.balance_of
    balance, reserved = await read(user)
    return views.user_view(user, balance, reserved)


async def _money_view(ctx: ActionContext, user_id: str, entry: Entry) -> Json:
    user = await ctx.accounts.require_user(user_id)
    return views.money_view(entry, await _user_view(ctx, user, committed=True))


# -- usage, stats, reports, audit ----------------------------------------------------------


async def prune_usage(ctx: ActionContext, path: Path, params: Params) -> Json:
    """Drops usage months past ``keep_months`` now (``gateway.usage_prune``)."""
    return await usage_prune.prune_usage(ctx.accounts.ledger, ctx.actor, params)


async def entries(ctx: ActionContext, path: Path, params: Params) -> Json:
    """A user's ledger entries oldest first, from ``after`` (a ``version``, default 0) on,
    ``limit`` (1-1000, default 100) at a time: every balance change, so the balance is the
    sum of ``amount`` over all of them."""
    user = await ctx.accounts.require_user(path["user_id"])
    after = _whole(params.get("after"), "after", 0, 0, 1 << 62)
    limit = _whole(params.get("limit"), "limit", 100, 1, 1000)
    found = await ctx.accounts.ledger.journal.entries_after(user.id, after, limit=limit + 1)
    page = found[:limit]
    return {
        "object": "list",
        "data": [views.entry_view(e) for e in page],
        "has_more": len(found) > limit,
        "next_after": page[-1].version if page else after,
    }


def _whole(raw: object, name: str, default: int, least: int, most: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw))
    except ValueError:
        value = least - 1
    if not least <= value <= most:
        raise BadRequest(
            f"{name} must be a whole number from {least} to {most}",
            param=name,
            code="invalid_parameter",
        )
    return value


async def usage(ctx: ActionContext, path: Path, params: Params) -> Json:
    user = await ctx.accounts.require_user(path["user_id"])
    return await reports.usage_page(ctx.accounts.ledger, user.id, params)


async def stats(ctx: ActionContext, path: Path, params: Params) -> Json:
    user = await ctx.accounts.require_user(path["user_id"])
    return await reports.stats(ctx.accounts.ledger, user.id, params)


async def revenue(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await reports.revenue(ctx.accounts.ledger, params)


async def models_report(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await reports.models(ctx.accounts.ledger, params)


async def top_users(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await reports.top_users(ctx.accounts.ledger, params)


async def usage_report(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await reports.usage_report(ctx.accounts.ledger, params)


async def audit(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await reports.audit(ctx.accounts.ledger, params)


async def webhook_deliveries(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await listing.deliveries(ctx.accounts.ledger, params)


# -- prices --------------------------------------------------------------------------------


async def list_models(ctx: ActionContext, path: Path, params: Params) -> Json:
    """The prices in force. A running gateway answers from memory (what it charges now);
    ``--direct`` cannot see that memory and answers from the price book the gateway last
    recorded, which has the same shape."""
    if ctx.gateway is not None:
        return views.price_list_view(price_rows(ctx.gateway.catalog))
    return views.price_list_view(await ctx.accounts.ledger.reports.list_prices())


async def reload_models(ctx: ActionContext, path: Path, params: Params) -> Json:
    if ctx.gateway is None:
        raise BadRequest(
            "a reload acts on a running gateway's memory: drop --direct to use its admin API, "
            "or send it SIGHUP (kill -HUP <pid>)",
            code="needs_running_gateway",
        )
    done = await reload(ctx.gateway, actor=ctx.actor, reason=optional_str(params, "reason"))
    return views.reload_view(
        models=len(done.catalog.models),
        digest=done.catalog.digest,
        previous_digest=done.previous_digest,
        changes=done.changes,
    )


# -- portal invitations -------------------------------------------------------------------


async def create_invite(ctx: ActionContext, path: Path, params: Params) -> Json:
    """The token is in this answer only; ``url`` is the sign-up link (a path with
    ``--direct``, which does not know the gateway's public URL)."""
    base = ctx.gateway.settings.public_url if ctx.gateway is not None else None
    return await invites.create_invite(ctx.accounts.ledger, params, actor=ctx.actor, base_url=base)


async def list_invites(ctx: ActionContext, path: Path, params: Params) -> Json:
    return await invites.list_invites(ctx.accounts.ledger, params)


async def login_link(ctx: ActionContext, path: Path, params: Params) -> Json:
    """A one-time link for the user to set their portal email and password (a first login, or
    a reset), in every sign-up mode; the token is in this answer only (``url`` is a path with
    ``--direct``)."""
    base = ctx.gateway.settings.public_url if ctx.gateway is not None else None
    return await login_links.create_login_link(
        ctx.accounts.ledger, path["user_id"], params, actor=ctx.actor, base_url=base
    )


ACTIONS: dict[str, Action] = {
    "create_user": Action("POST", "/admin/users", create_user, status=201),
    "list_users": Action("GET", "/admin/users", list_users),
    "get_user": Action("GET", "/admin/users/{user_id}", get_user),
    "create_key": Action("POST", "/admin/users/{user_id}/keys", create_key, status=201),
    "list_keys": Action("GET", "/admin/users/{user_id}/keys", list_keys),
    "revoke_key": Action("DELETE", "/admin/keys/{key_id}", revoke_key),
    "get_key": Action("GET", "/admin/keys/{key_id}", get_key),
    "update_key": Action("PATCH", "/admin/keys/{key_id}", update_key),
    "rotate_key": Action("POST", "/admin/keys/{key_id}/rotate", rotate_key, status=201),
    "update_user": Action("PATCH", "/admin/users/{user_id}", update_user),
    "add_credit": Action("POST", "/admin/users/{user_id}/credits", add_credit),
    "set_balance": Action("PUT", "/admin/users/{user_id}/balance", set_balance),
    "bulk_credit": Action("POST", "/admin/credits/bulk", bulk_credit),
    "usage": Action("GET", "/admin/users/{user_id}/usage", usage),
    "entries": Action("GET", "/admin/users/{user_id}/entries", entries),
    "stats": Action("GET", "/admin/users/{user_id}/stats", stats),
    "revenue": Action("GET", "/admin/reports/revenue", revenue),
    "models_report": Action("GET", "/admin/reports/models", models_report),
    "top_users": Action("GET", "/admin/reports/top-users", top_users),
    "usage_report": Action("GET", "/admin/reports/usage", usage_report),
    "audit": Action("GET", "/admin/audit", audit),
    "webhook_deliveries": Action("GET", "/admin/webhooks/deliveries", webhook_deliveries),
    "list_models": Action("GET", "/admin/models", list_models),
    "reload_models": Action("POST", "/admin/models/reload", reload_models),
    "create_invite": Action("POST", "/admin/invites", create_invite, status=201),
    "list_invites": Action("GET", "/admin/invites", list_invites),
    "login_link": Action("POST", "/admin/users/{user_id}/login-link", login_link, status=201),
    "prune_usage": Action("POST", "/admin/usage/retention", prune_usage),
}
