"""The durable ledger: users, keys, money, usage, audit and payments (SQLite or PostgreSQL).

base.py        the Ledger (six repositories over one database) and the error tree
ports.py       the repositories' contracts: Directory, Journal, Audit, Reports, Payments,
               Webhooks, Sessions
directory.py, journal.py, audit.py, reports.py, payments.py, webhooks.py, sessions.py
               their one implementation, over either database
logins.py, login_store.py
               customer-portal logins, invitations and failed log-ins (port, implementation)
database.py    the database handle they run on, and the shared SQL notation
sqlite.py, postgres.py
               the two databases, with the money statements that differ between them
partitions.py, retention.py
               the usage rows' months (PostgreSQL partitions; SQLite deletes)
rollups.py     the usage sums the reports read, written with the rows
sql.py, schema.py, migrations/
               statement building blocks; the schema
"""

from __future__ import annotations

from gateway.ledger.audit import SqlAudit
from gateway.ledger.base import Ledger
from gateway.ledger.database import Database
from gateway.ledger.directory import SqlDirectory
from gateway.ledger.journal import MoneyStatements, SqlJournal
from gateway.ledger.login_store import SqlLogins
from gateway.ledger.payments import SqlPayments
from gateway.ledger.reports import SqlReports
from gateway.ledger.sessions import SqlSessions
from gateway.ledger.support_ports import UsageStorage
from gateway.ledger.webhooks import SqlWebhooks

__all__ = ["Ledger", "open_ledger"]


async def open_ledger(database_url: str) -> Ledger:
    """The ledger named by ``database_url`` (``sqlite:///path`` or a PostgreSQL DSN),
    connected and migrated. Close it with ``await ledger.close()``."""
    db: Database
    money: MoneyStatements
    storage: UsageStorage
    if database_url.startswith("sqlite:///"):
        from gateway.ledger.retention import SqliteUsageStorage
        from gateway.ledger.sqlite import SqliteDatabase, SqliteMoney

        sqlite = SqliteDatabase(database_url.removeprefix("sqlite:///"))
        db, money, storage = sqlite, SqliteMoney(sqlite), SqliteUsageStorage(sqlite)
    else:
        from gateway.ledger.partitions import PostgresUsageStorage
        from gateway.ledger.postgres import PostgresDatabase, PostgresMoney

        postgres = PostgresDatabase(database_url)
        db, money = postgres, PostgresMoney(postgres)
        storage = PostgresUsageStorage(postgres)
    ledger = Ledger(
        database=db,
        directory=SqlDirectory(db),
        journal=SqlJournal(db, money),
        audit=SqlAudit(db),
        reports=SqlReports(db),
        payments=SqlPayments(db),
        webhooks=SqlWebhooks(db),
        logins=SqlLogins(db),
        sessions=SqlSessions(db),
        usage_storage=storage,
    )
    await ledger.open()
    return ledger
