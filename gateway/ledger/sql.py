"""Building blocks for statements written once for both dialects (notation: database.py)."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import orjson

from gateway.ledger.database import Row
from gateway.records import UsageRecord
from gateway.report_records import Totals

# usage_records columns in UsageRecord order (a column added later does not break the reads).
USAGE_FIELDS = tuple(f.name for f in fields(UsageRecord))
USAGE_COLUMNS = ", ".join(USAGE_FIELDS)
_TAGS = USAGE_FIELDS.index("tags")
_VALUES = operator.attrgetter(*USAGE_FIELDS)  # one C call per record on the settlement path

# The six sums every report shows, as columns of a grouped CTE ``g``, and their sums: a
# report's total row is summed from its groups in the same statement, so they always agree.
# SUM of an empty set is NULL in both databases; totals_of turns it into 0.
GROUPED = "requests, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost"
TOTALS = (
    "sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
    "sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens, "
    "sum(reasoning_tokens) AS reasoning_tokens, sum(cost) AS cost"
)


def usage_values(record: UsageRecord) -> list[Any]:
    """The record's column values in ``USAGE_FIELDS`` order, ``tags`` as stored: a JSON object
    whose keys are the tags (migration 0008), or None when there are none."""
    values = list(_VALUES(record))
    tags = values[_TAGS]
    values[_TAGS] = orjson.dumps(dict.fromkeys(tags, 1)).decode() if tags else None
    return values


def usage_of(row: Mapping[str, Any]) -> UsageRecord:
    """A usage record from a row of ``USAGE_COLUMNS`` (``usage_values`` undone)."""
    data = dict(row)
    tags = data.get("tags")
    data["tags"] = tuple(orjson.loads(tags)) if tags else ()
    return UsageRecord(**data)


class Params:
    """The arguments of a statement built piece by piece: ``p(value)`` keeps the value and
    answers its placeholder, ``$1`` then ``$2``...; pass ``*p.values`` with the statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def where(self, *conditions: tuple[str, Any]) -> str:
        """``WHERE`` and the conditions whose value is not None, ANDed (``""`` when none).

        Each condition is ``(left side, value)``, e.g. ``("target =", target)``. Only the
        filters given reach the SQL, so each can use its own index (``$1 IS NULL OR ...``
        would also leave PostgreSQL unable to type the parameter).
        """
        given = [f"{left} {self(value)}" for left, value in conditions if value is not None]
        return f"WHERE {' AND '.join(given)}" if given else ""


def totals_of(row: Row) -> Totals:
    """A Totals from a row holding the six standard aggregate columns (NULL sums are 0)."""
    return Totals(
        requests=int(row["requests"] or 0),
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        cached_tokens=int(row["cached_tokens"] or 0),
        reasoning_tokens=int(row["reasoning_tokens"] or 0),
        cost=int(row["cost"] or 0),
    )
