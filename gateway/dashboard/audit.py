"""/dashboard/audit: the audit log, filtered by user and action, paged; each event's target
linked to the page that shows it and its details as short ``name=value`` lines.

``ACTIONS`` lists every action the audit trail writes (tests/pages/test_dashboard_audit.py
checks it against the code that writes them), so the filter offers each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.dashboard.common import page, run
from gateway.errors import GatewayError
from gateway.pages.sessions import require_operator

PAGE = 50
ACTIONS = (
    "credits.add",
    "balance.set",
    "credits.bulk",
    "user.create",
    "user.signup",
    "user.update",
    "password.change",
    "key.create",
    "key.update",
    "key.revoke",
    "key.rotate",
    "invite.create",
    "login_link.create",
    "login.set",
    "price.set",
    "price.change",
    "price.remove",
    "models.reload",
    "models.reload_failed",
    "autotopup.configure",
    "autotopup.failed",
    "usage.prune",
    "dashboard.sign_out_all",
)
# Lines of details shown before the rest folds away (a price change can hold dozens).
SHOWN_LINES = 4


def target_link(action: str, target: str | None) -> str | None:
    """The dashboard page of an event's target: a model's prices, a user's page; None where
    the target has no page (an invite, nothing)."""
    if not target:
        return None
    family = action.split(".", 1)[0]
    if family in ("price", "models"):
        return "/dashboard/prices"
    if family in ("invite", "dashboard"):
        return None
    return f"/dashboard/users/{quote(target, safe='')}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _flat(prefix: str, value: object) -> Iterator[tuple[str, object]]:
    if isinstance(value, Mapping) and (value or not prefix):
        for name, inner in value.items():
            yield from _flat(f"{prefix}.{name}" if prefix else str(name), inner)
    else:
        yield prefix, value


def detail_lines(details: object) -> list[str]:
    """An event's details as ``name=value`` lines, nested names dotted; the ``new`` values of
    a change without a prefix. An ``old``/``new`` pair (a price change) shows only what
    changed, as ``name: old → new``."""
    if not isinstance(details, Mapping):
        return []
    old, new = details.get("old"), details.get("new")
    rest = {k: v for k, v in details.items() if k not in ("old", "new")}
    lines: list[str] = []
    if isinstance(old, Mapping):
        before = dict(_flat("", old))
        after = dict(_flat("", new if isinstance(new, Mapping) else {}))
        for name in dict.fromkeys([*before, *after]):
            was, now = before.get(name), after.get(name)
            if was != now:
                lines.append(f"{name}: {_shown(was)} → {_shown(now)}")
    elif isinstance(new, Mapping):
        lines += [f"{name}={_text(value)}" for name, value in _flat("", new)]
    elif new is not None:
        rest["new"] = new
    return lines + [f"{name}={_text(value)}" for name, value in _flat("", rest)]


def _shown(value: object) -> str:
    return "none" if value is None else _text(value)


async def audit(request: Request) -> Response:
    await require_operator(request)
    q = request.query_params
    asked = {"user": q.get("user", ""), "action": q.get("action", "")}
    offset = int(q["offset"]) if q.get("offset", "").isdigit() else 0
    context = {"asked": asked, "actions": ACTIONS, "offset": offset, "page_size": PAGE}
    try:
        found = await run(
            request, "audit", params={**asked, "limit": str(PAGE), "offset": str(offset)}
        )
    except GatewayError as exc:
        context.update(events=[], more=False, error=exc.message)
        return page(request, "audit.html", context, status=exc.status)
    for event in found["data"]:
        lines = detail_lines(event["details"])
        event["detail_lines"] = lines[:SHOWN_LINES]
        event["more_lines"] = lines[SHOWN_LINES:]
        event["link"] = target_link(event["action"], event["target"])
    context.update(events=found["data"], more=found["has_more"])
    return page(request, "audit.html", context)
