"""Operator money moves and the price book, on SQLite and PostgreSQL (Accounts + the ledger's
reports port, with the in-process balance store of embedded mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import catalog as catalog_mod
from gateway.accounts import Accounts, BulkApplied, BulkFailed, own_reference
from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.ledger.base import Ledger
from gateway.metering.store import MemoryStore
from gateway.price_reload import price_rows, record_prices, reload
from gateway.records import UsageRecord
from gateway.services import build, shutdown
from gateway.settings import Settings

MakeLedger = Callable[[], Awaitable[Ledger]]
USD = 1_000_000_000


def run(make: MakeLedger, scenario: Callable[[Accounts, Ledger], Awaitable[None]]) -> None:
    async def main() -> None:
        ledger = await make()
        try:
            await scenario(Accounts(ledger, MemoryStore(ledger.journal.balance)), ledger)
        finally:
            await ledger.close()

    asyncio.run(main())


async def books_balance(ledger: Ledger, user_id: str) -> int:
    """The ledger invariant: balance == sum of entries, each balance_after the running sum."""
    entries = await ledger.journal.list_entries(user_id)
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running, entry
    found = await ledger.journal.balance(user_id)
    assert found is not None
    assert found[0] == running
    return running


def usage(request_id: str, user_id: str, cost: int) -> UsageRecord:
    return UsageRecord(
        request_id=request_id, user_id=user_id, key_id=None, model="m", provider="p",
        endpoint="chat/completions", prompt_tokens=10, completion_tokens=5, cached_tokens=0,
        reasoning_tokens=0, price_input=1, price_cached_input=None, price_output=1, cost=cost,
        status="ok", usage_source="upstream", latency_ms=1, created_at=datetime.now(UTC),
    )  # fmt: skip


def test_set_balance_writes_one_adjustment_and_keeps_the_books(make_ledger: MakeLedger) -> None:
    async def scenario(a: Accounts, ledger: Ledger) -> None:
        await a.create_user(user_id="u", email=None, initial_credit="5.00", actor="t")
        assert (await a.store.admit("u", "r1", USD, ttl=60)).ok
        # Settled in the store, not yet written to the ledger (the outbox holds it).
        await a.store.settle(usage("r1", "u", USD // 4))
        before = await ledger.journal.list_entries("u")
        entry = await a.set_balance("u", "2.00", reason="correction", actor="t")
        after = await ledger.journal.list_entries("u")
        assert [e.reference for e in after[len(before) :]] == [entry.reference]
        assert (entry.kind, entry.amount, entry.balance_after) == ("adjustment", -3 * USD, 2 * USD)
        assert await books_balance(ledger, "u") == 2 * USD
        # The store keeps "ledger - unwritten usage": the unwritten call is still billed once.
        assert await a.store.snapshot("u") == (2 * USD - USD // 4, 0)
        await ledger.journal.write_usage([usage("r1", "u", USD // 4)])
        assert await books_balance(ledger, "u") == 2 * USD - USD // 4
        assert (await a.store.snapshot("u"))[0] == 2 * USD - USD // 4  # type: ignore[index]
        events, _ = await ledger.audit.list_audit(
            target="u", action="balance.set", limit=5, offset=0
        )
        assert len(events) == 1
        e = events[0]
        assert (e.actor, e.amount, e.reason) == ("t", -3 * USD, "correction")
        assert e.details is not None
        assert (e.details["previous_balance"], e.details["balance"]) == ("5.00", "2.00")

    run(make_ledger, scenario)


def test_set_balance_refuses_bad_amounts_and_unknown_users(make_ledger: MakeLedger) -> None:
    async def scenario(a: Accounts, ledger: Ledger) -> None:
        await a.create_user(user_id="u", email=None, initial_credit="1.00", actor="t")
        for bad in ("-1", "NaN", None, "1e30", 1.5):
            with pytest.raises(Unprocessable):
                await a.set_balance("u", bad, reason=None, actor="t")
        with pytest.raises(NotFound):
            await a.set_balance("ghost", "1.00", reason=None, actor="t")
        assert await books_balance(ledger, "u") == USD
        await a.set_balance("u", "0", reason="close", actor="t")
        assert await books_balance(ledger, "u") == 0

    run(make_ledger, scenario)


def test_a_credit_or_balance_set_with_the_callers_reference_applies_once(
    make_ledger: MakeLedger,
) -> None:
    async def scenario(a: Accounts, ledger: Ledger) -> None:
        await a.create_user(user_id="u", email=None, initial_credit="1.00", actor="t")
        await a.create_user(user_id="v", email=None, initial_credit=None, actor="t")
        ref = own_reference("form-0001:credit")
        assert ref == "admin:ref:form-0001:credit"
        first = await a.add_credit("u", "2.00", reason="r", actor="t", reference=ref)
        again = await a.add_credit("u", "2.00", reason="r", actor="t", reference=ref)
        assert (first.created, again.created) == (True, False)
        assert again.id == first.id
        assert await books_balance(ledger, "u") == 3 * USD
        assert await a.store.snapshot("u") == (3 * USD, 0)
        # The same reference for another amount or user moves nothing and says why.
        for user, amount in (("u", "5.00"), ("v", "2.00")):
            with pytest.raises(Conflict, match="already used"):
                await a.add_credit(user, amount, reason="r", actor="t", reference=ref)
        bal = own_reference("form-0001:balance")
        set_first = await a.set_balance("u", "10.00", reason="r", actor="t", reference=bal)
        await a.add_credit("u", "1.00", reason="later", actor="t")
        set_again = await a.set_balance("u", "10.00", reason="r", actor="t", reference=bal)
        assert (set_first.created, set_again.created) == (True, False)
        assert await books_balance(ledger, "u") == 11 * USD  # not set back to 10
        with pytest.raises(Conflict, match="already used"):
            await a.set_balance("u", "4.00", reason="r", actor="t", reference=bal)
        assert await books_balance(ledger, "u") == 11 * USD
        credits, _ = await ledger.audit.list_audit(
            target="u", action="credits.add", limit=10, offset=0
        )
        sets, _ = await ledger.audit.list_audit(
            target="u", action="balance.set", limit=10, offset=0
        )
        assert (len(credits), len(sets)) == (2, 1)  # replays audit nothing
        for bad in ("short", "has space in it", "x" * 101, 12345678):
            with pytest.raises(Unprocessable):
                own_reference(bad)
        assert own_reference(None) is None

    run(make_ledger, scenario)


def test_bulk_credit_applies_to_each_known_user_and_fails_unknown_alone(
    make_ledger: MakeLedger,
) -> None:
    async def scenario(a: Accounts, ledger: Ledger) -> None:
        for uid in ("a", "b"):
            await a.create_user(user_id=uid, email=None, initial_credit="1.00", actor="t")
        results = await a.bulk_credit(["a", "ghost", "b", "a"], "2.50", reason="promo", actor="t")
        assert [(r.user_id, type(r)) for r in results] == [
            ("a", BulkApplied),
            ("ghost", BulkFailed),
            ("b", BulkApplied),
        ]
        failed, applied = results[1], results[0]
        assert isinstance(failed, BulkFailed)
        assert failed.error.code == "user_not_found"
        assert isinstance(applied, BulkApplied)
        assert applied.balance == 3_500_000_000
        for uid in ("a", "b"):
            assert await books_balance(ledger, uid) == 3_500_000_000
            events, _ = await ledger.audit.list_audit(
                target=uid, action="credits.add", limit=9, offset=0
            )
            assert events[0].amount == 2_500_000_000
            assert events[0].reason == "promo"
        summary, _ = await ledger.audit.list_audit(
            target=None, action="credits.bulk", limit=9, offset=0
        )
        assert summary[0].details is not None
        assert (summary[0].details["applied"], summary[0].details["failed"]) == (
            ["a", "b"],
            ["ghost"],
        )
        for bad_ids in ([], "a", [1], [""], ["x"] * 1001):
            with pytest.raises(Unprocessable):
                await a.bulk_credit(bad_ids, "1.00", reason=None, actor="t")
        with pytest.raises(Unprocessable):
            await a.bulk_credit(["a"], "-1", reason=None, actor="t")
        assert await books_balance(ledger, "a") == 3_500_000_000

    run(make_ledger, scenario)


MODELS = """\
providers:
  p: {{base_url: http://127.0.0.1:9/v1}}
models:
  chat:
    provider: p
    price: {{input: "{input}", output: "10.00"}}
    max_output_tokens: 100
{extra}"""


def catalog(tmp_path: Path, input_price: str, extra: str = "") -> catalog_mod.Catalog:
    path = tmp_path / "models.yaml"
    path.write_text(MODELS.format(input=input_price, extra=extra))
    return catalog_mod.load(path, {})


def test_price_book_records_each_change_once_with_old_and_new(
    make_ledger: MakeLedger, tmp_path: Path
) -> None:
    cheap = (
        '  cheap:\n    provider: p\n    price: {input: "0.10", output: "0.40"}\n'
        "    max_output_tokens: 10\n"
    )

    async def scenario(a: Accounts, ledger: Ledger) -> None:
        first = await record_prices(ledger, catalog(tmp_path, "2.50", cheap), actor="t")
        assert [(c.model, c.events[0].action) for c in first] == [
            ("chat", "price.set"),
            ("cheap", "price.set"),
        ]
        # Another process (or a restart) loading the same file records nothing.
        assert await record_prices(ledger, catalog(tmp_path, "2.50", cheap), actor="t") == []
        changed = await record_prices(
            ledger, catalog(tmp_path, "3.00"), actor="ops", reason="new list price"
        )
        assert [(c.model, c.events[0].action) for c in changed] == [
            ("chat", "price.change"),
            ("cheap", "price.remove"),
        ]
        events, _ = await ledger.audit.list_audit(
            target="chat", action="price.change", limit=5, offset=0
        )
        assert len(events) == 1
        assert events[0].actor == "ops"
        assert events[0].reason == "new list price"
        details = events[0].details
        assert details is not None
        assert details["old"]["price_per_1m_tokens"]["input"] == "2.50"
        assert details["new"]["price_per_1m_tokens"]["input"] == "3.00"
        book = await ledger.reports.list_prices()
        assert [(r.model, r.input) for r in book] == [("chat", 3_000_000_000)]
        # The book is exactly what the file says, so --direct shows what the gateway charges.
        assert book == price_rows(catalog(tmp_path, "3.00"))

    run(make_ledger, scenario)


def long_context(write: str) -> str:
    return (
        "  claude:\n    provider: p\n    max_output_tokens: 10\n    price:\n"
        f'      input: "3.00"\n      cache_write: "{write}"\n      output: "15.00"\n'
        '      audio_input: "40.00"\n'
        "      tiers:\n        - above_input_tokens: 200000\n"
        '          price: {input: "6.00", cache_write: "7.50", output: "22.50",'
        ' audio_input: "40.00"}\n'
    )


def test_every_price_class_and_tier_is_in_the_book_and_a_change_to_one_is_audited(
    make_ledger: MakeLedger, tmp_path: Path
) -> None:
    async def scenario(a: Accounts, ledger: Ledger) -> None:
        await record_prices(ledger, catalog(tmp_path, "2.50", long_context("3.75")), actor="t")
        book = await ledger.reports.list_prices()
        assert book == price_rows(catalog(tmp_path, "2.50", long_context("3.75")))
        claude = book[1]
        assert (claude.cache_write, claude.audio_input) == (3_750_000_000, 40_000_000_000)
        assert [(t.above_input_tokens, t.input, t.cache_write) for t in claude.tiers] == [
            (200_000, 6_000_000_000, 7_500_000_000)
        ]
        assert (
            await record_prices(ledger, catalog(tmp_path, "2.50", long_context("3.75")), actor="t")
            == []
        )
        changed = await record_prices(
            ledger, catalog(tmp_path, "2.50", long_context("4.00")), actor="t"
        )
        assert [(c.model, c.events[0].action) for c in changed] == [("claude", "price.change")]
        details = changed[0].events[0].details
        assert details is not None
        old, new = details["old"]["price_per_1m_tokens"], details["new"]["price_per_1m_tokens"]
        assert (old["cache_write"], new["cache_write"]) == ("3.75", "4.00")
        assert new["tiers"] == [
            {
                "above_input_tokens": 200_000,
                "price_per_1m_tokens": {
                    "input": "6.00",
                    "output": "22.50",
                    "cache_write": "7.50",
                    "audio_input": "40.00",
                },
            }
        ]

    run(make_ledger, scenario)


def test_reload_keeps_old_prices_on_a_bad_file_and_history_on_a_good_one(
    database_url: str, tmp_path: Path
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS.format(input="2.50", extra=""))
    settings = Settings.from_env(
        {"GATEWAY_DATABASE_URL": database_url, "GATEWAY_MODELS": str(models)}
    )

    async def main() -> None:
        services = await build(settings)
        try:
            ledger = services.ledger
            await record_prices(ledger, services.catalog, actor="startup")
            await Accounts(ledger, services.store).create_user(
                user_id="u", email=None, initial_credit="1.00", actor="t"
            )
            charged = services.catalog.resolve("chat", "chat/completions").price
            await ledger.journal.write_usage(
                [replace(usage("r1", "u", 7), price_input=charged.input)]
            )

            models.write_text(MODELS.format(input="2.5.0", extra=""))
            with pytest.raises(Unprocessable) as refused:
                await reload(services, actor="ops")
            assert "models.yaml:6: models.chat.price.input" in refused.value.message
            assert services.catalog.resolve("chat", "chat/completions").price == charged
            assert [r.input for r in await ledger.reports.list_prices()] == [charged.input]

            models.write_text(MODELS.format(input="3.00", extra=""))
            answer = await reload(services, actor="ops", reason="list price")
            assert [(c.model, c.events[0].action) for c in answer.changes] == [
                ("chat", "price.change")
            ]
            # The next call is priced from the new catalog; the recorded call keeps its price.
            assert services.catalog.resolve("chat", "chat/completions").price.input == 3 * USD
            rows, _ = await ledger.reports.list_usage("u", limit=5, offset=0)
            assert [r.price_input for r in rows] == [charged.input]
            actions = [
                e.action
                for e in (
                    await ledger.audit.list_audit(target=None, action=None, limit=20, offset=0)
                )[0]
            ]
            assert actions[:3] == ["models.reload", "price.change", "models.reload_failed"]
        finally:
            await shutdown(services)

    asyncio.run(main())
