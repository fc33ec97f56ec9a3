"""The `gateway` command: commands.py (argparse, one command per action of gateway/actions.py),
transport.py (the admin API or the database itself), tables.py (answers as text tables)."""

from __future__ import annotations

from gateway.cli.commands import main

__all__ = ["main"]
