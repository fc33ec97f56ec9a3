"""Bulk credits with the caller's reference, and the answer of a money move the balance store
cannot read back, through the actions the admin API and the CLI both run (on SQLite and
PostgreSQL, with the in-process balance store of embedded mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.accounts import Accounts
from gateway.actions import ACTIONS, ActionContext
from gateway.errors import Unavailable, Unprocessable
from gateway.ledger.base import Ledger
from gateway.metering.store import MemoryStore
from gateway.records import AuditEvent
from gateway.views import Json
from tests.admin.test_balances_and_prices import books_balance

MakeLedger = Callable[[], Awaitable[Ledger]]
USD = 1_000_000_000


class ReadsFail(MemoryStore):
    """The in-process store, whose reads fail while ``down`` as Redis's do while it restarts;
    credits still apply (Redis queues them for retry, so the store gets them either way)."""

    down = False

    async def snapshot(self, user_id: str) -> tuple[int, int] | None:
        if self.down:
            raise Unavailable("metering store unavailable")
        return await super().snapshot(user_id)


Scenario = Callable[[ActionContext, ReadsFail, Ledger], Awaitable[None]]


def run(make: MakeLedger, scenario: Scenario) -> None:
    async def main() -> None:
        ledger = await make()
        try:
            store = ReadsFail(ledger.journal.balance)
            await scenario(ActionContext(Accounts(ledger, store), actor="t"), store, ledger)
        finally:
            await ledger.close()

    asyncio.run(main())


async def act(ctx: ActionContext, name: str, params: dict[str, Any], **path: str) -> Json:
    return await ACTIONS[name].run(ctx, path, params)


async def audit(ledger: Ledger, action: str, target: str | None = None) -> list[AuditEvent]:
    events, _ = await ledger.audit.list_audit(target=target, action=action, limit=50, offset=0)
    return events


def rows(answer: Json) -> list[tuple[str, str, bool | None]]:
    return [(r["user_id"], r["status"], r.get("duplicate")) for r in answer["data"]]


def test_a_bulk_credit_replayed_with_its_reference_credits_each_user_once(
    make_ledger: MakeLedger,
) -> None:
    async def scenario(ctx: ActionContext, store: ReadsFail, ledger: Ledger) -> None:
        for uid in ("a", "b"):
            await act(ctx, "create_user", {"id": uid, "initial_credit": "1.00"})
        bulk = {"user_ids": ["a", "ghost", "b"], "amount": "2.50", "reference": "outage-1130"}
        first = await act(ctx, "bulk_credit", bulk)
        assert rows(first) == [
            ("a", "applied", False),
            ("ghost", "failed", None),
            ("b", "applied", False),
        ]
        again = await act(ctx, "bulk_credit", bulk)  # the answer was lost: sent again
        assert rows(again) == [
            ("a", "applied", True),
            ("ghost", "failed", None),
            ("b", "applied", True),
        ]
        assert [r.get("entry") for r in again["data"]] == [r.get("entry") for r in first["data"]]
        assert [r.get("balance") for r in again["data"]] == ["3.50", None, "3.50"]
        for uid in ("a", "b"):
            assert await books_balance(ledger, uid) == 3_500_000_000
            entries = await ledger.journal.list_entries(uid)
            assert entries[-1].reference == f"admin:bulk:outage-1130/{uid}"
            assert len(await audit(ledger, "credits.add", uid)) == 1
        # A user that failed the first time gets the credit on a replay, the others do not.
        await act(ctx, "create_user", {"id": "ghost"})
        third = await act(ctx, "bulk_credit", bulk)
        assert rows(third) == [
            ("a", "applied", True),
            ("ghost", "applied", False),
            ("b", "applied", True),
        ]
        assert await books_balance(ledger, "ghost") == 2_500_000_000
        summaries = await audit(ledger, "credits.bulk")
        assert len(summaries) == 3
        assert summaries[0].details is not None
        assert summaries[0].details["reference"] == "outage-1130"
        assert (summaries[0].details["applied"], summaries[0].details["duplicate"]) == (
            ["ghost"],
            ["a", "b"],
        )
        # A replay that moves nothing at all audits nothing more.
        await act(ctx, "bulk_credit", bulk)
        assert len(await audit(ledger, "credits.bulk")) == 3
        # The same reference for another amount fails each row and moves nothing.
        other = await act(ctx, "bulk_credit", {**bulk, "amount": "9.00"})
        assert {r["error"]["code"] for r in other["data"]} == {"reference_reused"}
        assert other["applied"] == 0
        assert await books_balance(ledger, "a") == 3_500_000_000
        # A single credit's reference and a bulk's are apart: the same string applies anew.
        single = await act(
            ctx, "add_credit", {"amount": "1.00", "reference": "outage-1130"}, user_id="a"
        )
        assert single["duplicate"] is False
        assert await books_balance(ledger, "a") == 4_500_000_000
        # Without a reference each bulk credit is new (a random bulk id), as before.
        for _ in range(2):
            plain = await act(ctx, "bulk_credit", {"user_ids": ["b"], "amount": "1.00"})
            assert rows(plain) == [("b", "applied", False)]
        assert await books_balance(ledger, "b") == 5_500_000_000
        assert (await ledger.journal.list_entries("b"))[-1].reference.startswith("bulk:")

    run(make_ledger, scenario)


@pytest.mark.parametrize(
    "bad", ["short", "has space in it", "x" * 101, "slash/in/it", 12345678, "abcdefgh\n"]
)
def test_a_bad_bulk_reference_is_refused_and_changes_nothing(
    make_ledger: MakeLedger, bad: object
) -> None:
    async def scenario(ctx: ActionContext, store: ReadsFail, ledger: Ledger) -> None:
        await act(ctx, "create_user", {"id": "a", "initial_credit": "1.00"})
        before = await ledger.journal.list_entries("a")
        with pytest.raises(Unprocessable) as refused:
            await act(ctx, "bulk_credit", {"user_ids": ["a"], "amount": "2.00", "reference": bad})
        assert (refused.value.code, refused.value.param) == ("invalid_reference", "reference")
        assert await ledger.journal.list_entries("a") == before
        assert await audit(ledger, "credits.bulk") == []
        assert await audit(ledger, "credits.add") == []

    run(make_ledger, scenario)


def test_a_committed_money_move_answers_the_ledgers_balance_when_the_store_cannot_be_read(
    make_ledger: MakeLedger,
) -> None:
    async def scenario(ctx: ActionContext, store: ReadsFail, ledger: Ledger) -> None:
        await act(ctx, "create_user", {"id": "u", "initial_credit": "1.00"})
        assert (await store.admit("u", "r1", USD // 4, ttl=60)).ok  # a call in flight
        store.down = True
        credit = await act(ctx, "add_credit", {"amount": "2.00"}, user_id="u")
        assert (credit["user"]["balance"], credit["user"]["reserved"]) == ("3.00", None)
        assert (credit["entry"]["balance_after"], credit["duplicate"]) == ("3.00", False)
        moved = await act(ctx, "set_balance", {"balance": "5.00"}, user_id="u")
        assert (moved["user"]["balance"], moved["user"]["reserved"]) == ("5.00", None)
        bulk = await act(
            ctx, "bulk_credit", {"user_ids": ["u"], "amount": "0.50", "reference": "down-0001"}
        )
        assert [(r["balance"], r["reserved"]) for r in bulk["data"]] == [("5.50", None)]
        created = await act(ctx, "create_user", {"id": "v", "initial_credit": "2.00"})
        assert (created["balance"], created["reserved"]) == ("2.00", None)
        assert await books_balance(ledger, "u") == 5_500_000_000
        assert len(await ledger.journal.list_entries("u")) == 4
        # A plain read has committed nothing: it fails, and the caller may simply retry it.
        with pytest.raises(Unavailable):
            await act(ctx, "get_user", {}, user_id="u")
        store.down = False
        user = await act(ctx, "get_user", {}, user_id="u")
        assert (user["balance"], user["reserved"]) == ("5.50", "0.25")  # the store had them all
        replay = await act(
            ctx, "bulk_credit", {"user_ids": ["u"], "amount": "0.50", "reference": "down-0001"}
        )
        assert [(r["balance"], r["reserved"], r["duplicate"]) for r in replay["data"]] == [
            ("5.50", "0.25", True)
        ]

    run(make_ledger, scenario)
