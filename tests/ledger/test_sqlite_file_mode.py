"""The embedded database holds every balance and the hashes of keys and passwords: its files
are made readable by their owner only (0600, like the demo's key files beside it)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from gateway.ledger import open_ledger


def test_a_new_database_and_its_wal_and_shm_files_are_owner_only(tmp_path: Path) -> None:
    async def main() -> None:
        ledger = await open_ledger(f"sqlite:///{tmp_path / 'sub' / 'gateway.db'}")
        try:
            await ledger.directory.create_user(user_id="alice", email=None)  # writes the WAL
            made = sorted(p.name for p in (tmp_path / "sub").iterdir())
            assert made == ["gateway.db", "gateway.db-shm", "gateway.db-wal"]
            for path in (tmp_path / "sub").iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        finally:
            await ledger.close()

    previous = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        asyncio.run(main())
    finally:
        os.umask(previous)


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    db.touch()
    db.chmod(0o640)

    async def main() -> None:
        ledger = await open_ledger(f"sqlite:///{db}")
        await ledger.close()

    asyncio.run(main())
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
