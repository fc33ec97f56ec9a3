"""The embedded usage outbox: what cannot reach the ledger at shutdown is spilled under the
spill folder and written at the next start, exactly once; a spill file left beside the
database by an older release is adopted."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from gateway.ledger import open_ledger
from gateway.ledger.ports import Journal
from gateway.metering.codec import encode_record
from gateway.metering.modes import open_metering
from gateway.metering.outbox import OutboxWriter
from gateway.metrics import Metrics
from gateway.records import UsageRecord
from gateway.settings import Settings
from tests.support.records import usage_record

UID = "alice"
CREDIT = 10**9


def record(i: int, cost: int = 7) -> UsageRecord:
    return usage_record(f"req-{i}", UID, cost, key_id=None, prompt_tokens=i, completion_tokens=1)


class DownJournal:
    """A journal whose database is down: every write fails."""

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        raise ConnectionError("database is down")


def test_records_that_cannot_be_written_are_spilled_and_written_at_the_next_start(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        spill = tmp_path / "spill" / "outbox.jsonl"
        queued: deque[UsageRecord] = deque([record(1), record(2)])
        down = OutboxWriter(DownJournal(), queued, spill_path=spill)  # type: ignore[arg-type]
        await down.stop()  # the final flush fails: both records go to the spill file
        assert len(spill.read_bytes().splitlines()) == 2

        ledger = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        try:
            await ledger.directory.create_user(user_id=UID, email=None)
            await ledger.journal.post_entry(UID, kind="grant", amount=CREDIT, reference="g")
            journal: Journal = ledger.journal
            for _ in range(2):  # a second start finds nothing left to replay
                writer = OutboxWriter(journal, deque(), spill_path=spill)
                await writer.start()
                await writer.stop()
            rows, _ = await ledger.reports.list_usage(UID, limit=10, offset=0)
            assert sorted(r.request_id for r in rows) == ["req-1", "req-2"]
            assert await ledger.journal.balance(UID) == (CREDIT - 14, 3)
            assert not spill.exists()
        finally:
            await ledger.close()

    asyncio.run(main())


def test_a_spill_file_beside_the_database_from_an_older_release_is_adopted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gateway.db"
    settings = Settings(database_url=f"sqlite:///{db}")
    legacy = Path(f"{db}.outbox.jsonl")
    legacy.write_bytes(encode_record(record(7)) + b"\n")

    async def main() -> None:
        ledger = await open_ledger(settings.database_url)
        try:
            await ledger.directory.create_user(user_id=UID, email=None)
            await ledger.journal.post_entry(UID, kind="grant", amount=CREDIT, reference="g")
            metering = await open_metering(settings, ledger, Metrics())
            await metering.start()
            await metering.stop()
            rows, _ = await ledger.reports.list_usage(UID, limit=10, offset=0)
            assert [r.request_id for r in rows] == ["req-7"]
        finally:
            await ledger.close()

    asyncio.run(main())
    assert not legacy.exists()
    assert settings.spill_folder() == tmp_path / "gateway-spill"
