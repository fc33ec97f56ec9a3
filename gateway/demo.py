"""`gateway serve --demo`: the built-in mock upstream, a demo user with $10 of credit, and what
a new operator needs, printed once at start: the user's key, the admin key, and commands that
run as printed from any terminal.

Both keys are kept in 0600 files beside the SQLite database (``gateway.db.demo-key``,
``gateway.db.demo-admin-key``), so every start on the same database prints the same keys and
an exported ``GATEWAY_ADMIN_KEY`` keeps working across restarts. A ``GATEWAY_ADMIN_KEY`` set
in the environment wins and is not printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from gateway import catalog as catalog_mod
from gateway.accounts import Accounts
from gateway.app import create_app
from gateway.auth import hash_key
from gateway.errors import Conflict
from gateway.ledger import open_ledger
from gateway.metering.store import MemoryStore
from gateway.serve import GracefulServer, load_catalog, uvicorn_config
from gateway.settings import Settings

DEMO_USER = "demo"
DEMO_CREDIT = "10.00"
DEMO_MODEL = "demo"
USER_KEY_FILE = ".demo-key"
ADMIN_KEY_FILE = ".demo-admin-key"


def serve_demo(settings: Settings) -> None:
    admin_file: Path | None = None
    if settings.admin_key is None:
        admin_file = beside_db(settings, ADMIN_KEY_FILE)
        settings = settings.with_(
            admin_key=kept_secret(admin_file, lambda: "adm-" + secrets.token_urlsafe(24))
        )
    catalog = load_catalog(settings)
    model = catalog.models.get(DEMO_MODEL)
    if model is None:
        sys.exit(f"gateway: --demo needs a model named {DEMO_MODEL!r} in {settings.models_path}")
    key = asyncio.run(_seed_demo(settings))
    upstream = urlparse(model.provider.base_url)
    text = banner(
        base=f"http://{settings.host}:{settings.port}",
        key=key,
        admin_key=settings.admin_key if admin_file else None,
        admin_file=admin_file,
        python=sys.executable,
        has_openai=importlib.util.find_spec("openai") is not None,
    )
    asyncio.run(
        _run_with_mock(
            settings, catalog, upstream.hostname or "127.0.0.1", upstream.port or 80, text
        )
    )


def beside_db(settings: Settings, suffix: str) -> Path:
    """A demo file beside the SQLite database (``./gateway.db`` for any other database)."""
    url = settings.database_url
    db = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    return Path((db if db not in ("", ":memory:") else "gateway.db") + suffix)


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret saved in ``path``, or a new one saved there (owner-only)."""
    if path.exists():
        saved = path.read_text().strip()
        if saved:
            return saved
    fresh = make()
    path.write_text(fresh + "\n")
    os.chmod(path, 0o600)
    return fresh


async def _seed_demo(settings: Settings) -> str:
    """Creates the demo user once, and a demo key once (kept beside the database)."""
    ledger = await open_ledger(settings.database_url)
    try:
        accounts = Accounts(ledger, MemoryStore(ledger.journal.balance))
        with contextlib.suppress(Conflict):
            await accounts.create_user(
                user_id=DEMO_USER,
                email="demo@example.com",
                initial_credit=DEMO_CREDIT,
                actor="demo",
            )
        key_file = beside_db(settings, USER_KEY_FILE)
        if key_file.exists():
            saved = key_file.read_text().strip()
            found = await ledger.directory.find_key(hash_key(saved))
            if found and found[0].revoked_at is None:
                return saved
        fresh, _ = await accounts.create_key(DEMO_USER, name="demo", actor="demo")
        key_file.write_text(fresh.key + "\n")
        os.chmod(key_file, 0o600)
        return fresh.key
    finally:
        await ledger.close()


async def _run_with_mock(
    settings: Settings, catalog: catalog_mod.Catalog, host: str, port: int, text: str
) -> None:
    from gateway.mock import runner as mock_runner

    try:
        runner, _ = await mock_runner.start(host, port)
    except OSError as exc:
        sys.exit(
            f"gateway: the demo's mock upstream cannot listen on {host}:{port} (the demo "
            f"provider's base_url in {settings.models_path}): {exc.strerror}. Is another demo "
            "running? Stop it, or give the provider another port."
        )
    print(text, flush=True)
    try:
        await GracefulServer(
            uvicorn_config(create_app(settings, catalog=catalog), settings)
        ).serve()
    finally:
        await runner.cleanup()


def banner(
    *,
    base: str,
    key: str,
    admin_key: str | None,
    admin_file: Path | None,
    python: str,
    has_openai: bool,
) -> str:
    """What the demo prints. The two command blocks are flush left, with absolute paths to this
    installation's python and `gateway`, so they run pasted as printed into any terminal (the
    venv need not be active there); ``openai`` is installed first when this python lacks it
    (the gateway does not need it)."""
    py = shlex.quote(python)
    script = Path(python).with_name("gateway")
    cli = shlex.quote(str(script)) if script.exists() else f"{py} -m gateway"
    if admin_key is None:
        admin_line = "from GATEWAY_ADMIN_KEY"
        export = f"export GATEWAY_URL={base}   # GATEWAY_ADMIN_KEY: as you set it"
    else:
        admin_line = f"{admin_key}   (kept in {admin_file}: the same at every start)"
        export = f"export GATEWAY_URL={base} GATEWAY_ADMIN_KEY={admin_key}"
    install = (
        ""
        if has_openai
        else f"{py} -m pip install -q openai   # the snippet's client (the gateway needs none)\n"
    )
    return f"""
  Metering gateway demo at {base}
    demo user: {DEMO_USER} (${DEMO_CREDIT} of credit)     model: {DEMO_MODEL} (mock upstream)
    key:       {key}
    admin key: {admin_line}

  Try it from another terminal (paste as printed):

{install}{py} - <<'PY'
from openai import OpenAI
client = OpenAI(base_url="{base}/v1", api_key="{key}")
reply = client.chat.completions.create(
    model="{DEMO_MODEL}", messages=[{{"role": "user", "content": "Say hello"}}])
print(reply.choices[0].message.content)
PY
curl -s {base}/me -H "Authorization: Bearer {key}"

  Operator commands (the `gateway` CLI, the admin API) need the admin key:

{export}
{cli} users show {DEMO_USER}
"""
