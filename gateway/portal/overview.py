"""The overview (balance, reserved, the low-balance banner) and the quick start page."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from starlette.requests import Request
from starlette.responses import Response

from gateway import provider_keys
from gateway.portal.common import accounts, page, signed_in
from gateway.records import ApiKey, User
from gateway.web import services_of

# A model for the snippets when the catalog offers none of the kind.
OPENAI_EXAMPLE = "gpt-4o-mini"
ANTHROPIC_EXAMPLE = "claude-sonnet-4-5"
NOTICES = {
    "welcome": "Welcome! Your account is ready.",
    "login_set": "Your email and password are set, and you are signed in.",
}


def low_balance_level(available: int, *, warn: int, critical: int) -> str | None:
    """``empty`` when nothing is available (every call is refused), ``critical`` /
    ``warning`` when ``available`` (nano-USD) is below that threshold (the same
    GATEWAY_LOW_BALANCE_* levels the gateway signals on calls), else None."""
    if available <= 0:
        return "empty"
    if available < critical:
        return "critical"
    if available < warn:
        return "warning"
    return None


async def overview(request: Request) -> Response:
    _, user = await signed_in(request)
    services = services_of(request)
    balance, reserved = await accounts(request).balance_of(user)
    settings = services.settings
    level = low_balance_level(
        balance - reserved, warn=settings.low_balance_warn, critical=settings.low_balance_critical
    )
    keys = await services.ledger.directory.list_keys(user.id)
    recent, _ = await services.ledger.reports.list_usage_before(user.id, cursor=None, limit=5)
    notice = NOTICES.get(next((n for n in NOTICES if request.query_params.get(n)), ""))
    return page(
        request,
        "overview.html",
        {
            "user": user,
            "balance": balance,
            "reserved": reserved,
            "available": balance - reserved,
            "level": level,
            "threshold": settings.low_balance_critical
            if level == "critical"
            else settings.low_balance_warn,
            "active_keys": sum(1 for k in keys if k.revoked_at is None),
            "recent": recent,
            "key_names": key_names(keys),
            "notice": notice,
        },
    )


def key_names(keys: Sequence[ApiKey]) -> dict[str, str]:
    """Key id -> what the usage tables show for it: its name, else its prefix."""
    return {k.id: k.name or f"{k.prefix}…" for k in keys}


def example_models(request: Request, user: User) -> tuple[str, str]:
    """A chat model served over the OpenAI API and one over Anthropic's, for the snippets
    (the first of each in models.yaml the user's model list allows)."""
    catalog = services_of(request).catalog
    openai = anthropic = None
    for name, model in catalog.models.items():
        allowed = user.models is None or any(fnmatchcase(name, p) for p in user.models)
        if model.kind != "chat" or not allowed or provider_keys.unset(model):
            continue
        if model.provider.api == "anthropic":
            anthropic = anthropic or name
        else:
            openai = openai or name
    return openai or OPENAI_EXAMPLE, anthropic or ANTHROPIC_EXAMPLE


async def quickstart(request: Request) -> Response:
    _, user = await signed_in(request)
    base = services_of(request).settings.public_url.rstrip("/")
    openai_model, anthropic_model = example_models(request, user)
    return page(
        request,
        "quickstart.html",
        {
            "base": base,
            "openai_model": openai_model,
            "anthropic_model": anthropic_model,
        },
    )
