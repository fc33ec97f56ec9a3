"""The operator's usage retention action: ``POST /admin/usage/retention`` and
``gateway usage prune`` (one row of gateway/actions.py's table).

What ``GATEWAY_USAGE_RETENTION_MONTHS`` does daily (gateway/usage_retention.py), on demand:
keep the usage rows of the current UTC month and the ``keep_months`` before it, drop the
older months (PostgreSQL: their partitions; SQLite: their rows). Ledger entries and rollups
are never touched (gateway/ledger/support_ports.py, ``UsageStorage``). ``dry_run`` answers
the months that would go and changes nothing; a real prune is audited (``usage.prune``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import BadRequest
from gateway.records import utcnow
from gateway.usage_retention import horizon, prune_event

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gateway.ledger.base import Ledger
    from gateway.views import Json

MOST_MONTHS = 1200


async def prune_usage(ledger: Ledger, actor: str, params: Mapping[str, Any]) -> Json:
    """Params: ``keep_months`` (whole number 1-1200, required), ``dry_run`` (boolean, default
    false). Answers ``{"object": "usage.retention", "dry_run", "keep_months", "first_kept"
    (ISO 8601, the first instant kept), "months" (YYYY-MM, oldest first: dropped, or that a
    dry run would drop)}``. 400 ``invalid_parameter`` on a bad parameter (nothing changed)."""
    keep = _keep_months(params.get("keep_months"))
    dry_run = _flag(params.get("dry_run"), "dry_run")
    first_kept = horizon(utcnow(), keep)
    storage = ledger.usage_storage
    if dry_run:
        months = await storage.months_before(first_kept)
    else:
        months = await storage.drop_before(first_kept)
        await ledger.audit.record_audit(prune_event(actor, keep, first_kept, months))
    return {
        "object": "usage.retention",
        "dry_run": dry_run,
        "keep_months": keep,
        "first_kept": first_kept.isoformat(),
        "months": months,
    }


def _keep_months(raw: object) -> int:
    # The setting's 0 means "keep for ever"; here it would mean "drop all but this month",
    # so it is refused rather than guessed.
    try:
        value = int(str(raw)) if raw is not None and not isinstance(raw, bool) else 0
    except ValueError:
        value = 0
    if str(raw).strip() != str(value) or not 1 <= value <= MOST_MONTHS:
        raise BadRequest(
            f"keep_months must be a whole number from 1 to {MOST_MONTHS}",
            param="keep_months",
            code="invalid_parameter",
        )
    return value


def _flag(raw: object, name: str) -> bool:
    if raw is None or raw is False or raw in ("", "false", "0"):
        return False
    if raw is True or raw in ("true", "1"):
        return True
    raise BadRequest(f"{name} must be true or false", param=name, code="invalid_parameter")
