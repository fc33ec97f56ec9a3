"""The operator's usage retention action (``POST /admin/usage/retention``, ``gateway usage
prune``) on every database: a dry run lists the months past the window and changes nothing;
a prune drops them (never an entry, never a rollup) and is audited; bad input changes
nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli.transport import CommandError, DirectTransport
from gateway.ledger import open_ledger
from gateway.ledger.partitions import shift
from gateway.records import utcnow
from tests.ledger.books import USD, Contract, usage
from tests.ledger.test_usage_storage import gateway_settings, stored_rollups


def test_a_dry_run_lists_the_months_a_prune_then_drops_and_audits(
    contract: Contract, tmp_path: Path
) -> None:
    async def main() -> None:
        now = utcnow()
        old, older = shift(now, -3), shift(now, -4)
        ledger = await open_ledger(contract.url)
        try:
            await ledger.directory.create_user(user_id="alice", email=None)
            await ledger.journal.post_entry("alice", kind="grant", amount=USD, reference="g")
            await ledger.journal.write_usage(
                [
                    usage("older", "alice", 100, older),
                    usage("old", "alice", 100, old),
                    usage("kept", "alice", 100, shift(now, -1)),
                ]
            )
            rollups = await stored_rollups(ledger)
            entries = await ledger.journal.list_entries("alice")
        finally:
            await ledger.close()
        settings = gateway_settings(contract, tmp_path)
        transport = DirectTransport(settings)
        try:
            for bad in ({}, {"keep_months": 0}, {"keep_months": "2.5"}, {"keep_months": True}):
                with pytest.raises(CommandError, match="keep_months"):
                    await transport.call("prune_usage", {}, bad)
            with pytest.raises(CommandError, match="dry_run"):
                await transport.call("prune_usage", {}, {"keep_months": 2, "dry_run": "maybe"})
            gone = [older.strftime("%Y-%m"), old.strftime("%Y-%m")]
            dry = await transport.call("prune_usage", {}, {"keep_months": 2, "dry_run": True})
            assert dry["dry_run"] is True
            assert dry["first_kept"] == shift(now, -2).isoformat()
            # PostgreSQL names every month partition before the window, empty ones too.
            assert [m for m in dry["months"] if m in gone] == gone
            ledger = (await transport._open()).ledger
            rows, _ = await ledger.reports.list_usage("alice", limit=10, offset=0)
            assert len(rows) == 3  # a dry run changes nothing
            assert await ledger.audit.list_audit(
                target=None, action="usage.prune", limit=10, offset=0
            ) == ([], False)

            done = await transport.call("prune_usage", {}, {"keep_months": "2"})
            assert (done["dry_run"], done["months"]) == (False, dry["months"])
            rows, _ = await ledger.reports.list_usage("alice", limit=10, offset=0)
            assert [r.request_id for r in rows] == ["kept"]
            assert await ledger.journal.list_entries("alice") == entries
            assert await stored_rollups(ledger) == rollups
            audited, _ = await ledger.audit.list_audit(
                target=None, action="usage.prune", limit=10, offset=0
            )
            assert len(audited) == 1
            assert audited[0].actor.startswith("cli:")
            assert audited[0].details == {
                "keep_months": 2,
                "first_kept": done["first_kept"],
                "months": done["months"],
            }
            again = await transport.call("prune_usage", {}, {"keep_months": 2})
            assert again["months"] == []  # idempotent
        finally:
            await transport.close()

    asyncio.run(main())
