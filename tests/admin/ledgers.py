"""Ledgers with the reports mixins, for tests of the operator surface.

TEMPORARY WIRING: until ``SqliteLedger``/``PostgresLedger`` inherit ``SqliteReportsMixin``/
``PostgresReportsMixin`` and app.py's lifespan syncs the price book at startup (the integration
note), these build the combined classes test-locally and ``patch_ledgers`` makes
``open_ledger`` (gateway, CLI) use them and the app record its prices at start. Each part
detects when the real wiring is in place and then does nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import gateway.app as app_mod
import gateway.ledger.postgres as postgres_mod
import gateway.ledger.sqlite as sqlite_mod
from gateway import prices
from gateway.ledger.postgres_reports import PostgresReportsMixin
from gateway.ledger.sqlite_reports import SqliteReportsMixin


def reporting_sqlite() -> type[sqlite_mod.SqliteLedger]:
    base = sqlite_mod.SqliteLedger
    if issubclass(base, SqliteReportsMixin):
        return base
    return type("ReportingSqliteLedger", (SqliteReportsMixin, base), {})


def reporting_postgres() -> type[postgres_mod.PostgresLedger]:
    base = postgres_mod.PostgresLedger
    if issubclass(base, PostgresReportsMixin):
        return base
    return type("ReportingPostgresLedger", (PostgresReportsMixin, base), {})


def patch_ledgers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_mod, "SqliteLedger", reporting_sqlite())
    monkeypatch.setattr(postgres_mod, "PostgresLedger", reporting_postgres())
    if "record_prices" in inspect.getsource(app_mod):
        return
    build = app_mod.build

    async def build_and_record(*args: Any, **kwargs: Any) -> Any:
        services = await build(*args, **kwargs)
        await prices.record_prices(services.ledger, services.catalog, actor="startup")
        return services

    monkeypatch.setattr(app_mod, "build", build_and_record)
