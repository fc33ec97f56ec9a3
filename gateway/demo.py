"""`gateway serve --demo`: the built-in mock upstream, a demo user with $10 of credit, and what
a new operator needs, printed once at start: the user's key, the admin key, commands that
run as printed from any terminal, and the customer portal's address with the demo user's
email and password.

The keys and the portal password are kept in 0600 files beside the SQLite database
(``gateway.db.demo-key``, ``gateway.db.demo-admin-key``, ``gateway.db.demo-portal-password``),
so every start on the same database prints the same ones and an exported
``GATEWAY_ADMIN_KEY`` keeps working across restarts. A ``GATEWAY_ADMIN_KEY`` set in the
environment wins and is not printed. A portal password the demo user changed is theirs: the
banner says so and prints a one-time link to set a new one instead.
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
from gateway.portal.accounts import PortalAccounts
from gateway.portal.login_links import create_login_link
from gateway.portal.passwords import Passwords
from gateway.serve import GracefulServer, load_catalog, uvicorn_config
from gateway.settings import Settings

DEMO_USER = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_CREDIT = "10.00"
DEMO_MODEL = "demo"
USER_KEY_FILE = ".demo-key"
ADMIN_KEY_FILE = ".demo-admin-key"
PORTAL_PASSWORD_FILE = ".demo-portal-password"


def serve_demo(settings: Settings) -> None:
    admin_file: Path | None = None
    if settings.admin_key is None:
        admin_file = beside_db(settings, ADMIN_KEY_FILE)
        settings = settings.with_(
            admin_key=kept_secret(admin_file, lambda: "adm-" + secrets.token_urlsafe(24))
        )
    base = f"http://{settings.host}:{settings.port}"
    if not settings.extra_env.get("GATEWAY_PUBLIC_URL"):
        settings = settings.with_(public_url=base)  # the portal's quick start shows it
    catalog = load_catalog(settings)
    model = catalog.models.get(DEMO_MODEL)
    if model is None:
        sys.exit(f"gateway: --demo needs a model named {DEMO_MODEL!r} in {settings.models_path}")
    key, (password, link) = asyncio.run(_seed_demo(settings))
    upstream = urlparse(model.provider.base_url)
    text = banner(
        base=base,
        key=key,
        portal_password=password,
        portal_link=link,
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


async def _seed_demo(settings: Settings) -> tuple[str, tuple[str | None, str | None]]:
    """Creates the demo user once, a demo key once (kept beside the database) and the demo
    user's portal login; answers the key and ``_portal_login``'s (password, link)."""
    ledger = await open_ledger(settings.database_url)
    try:
        accounts = Accounts(ledger, MemoryStore(ledger.journal.balance))
        with contextlib.suppress(Conflict):
            await accounts.create_user(
                user_id=DEMO_USER,
                email=DEMO_EMAIL,
                initial_credit=DEMO_CREDIT,
                actor="demo",
            )
        password = await _portal_login(settings, accounts)
        key_file = beside_db(settings, USER_KEY_FILE)
        if key_file.exists():
            saved = key_file.read_text().strip()
            found = await ledger.directory.find_key(hash_key(saved))
            if found and found[0].revoked_at is None:
                return saved, password
        fresh, _ = await accounts.create_key(DEMO_USER, name="demo", actor="demo")
        key_file.write_text(fresh.key + "\n")
        os.chmod(key_file, 0o600)
        return fresh.key, password
    finally:
        await ledger.close()


async def _portal_login(settings: Settings, accounts: Accounts) -> tuple[str | None, str | None]:
    """The demo user's portal password (kept beside the database) and, when the user has
    changed it since (or the file is lost), a login link to set a new one instead: a restart
    never undoes a password the user chose. The login is created once; (None, None): the
    demo's email belongs to another login."""
    kept = beside_db(settings, PORTAL_PASSWORD_FILE)
    portal = PortalAccounts(accounts.ledger, accounts.store, Passwords())
    login = await accounts.ledger.logins.get_login(DEMO_USER)
    if login is None:
        password = kept_secret(kept, lambda: secrets.token_urlsafe(12))
        try:
            await portal.add_login(DEMO_USER, DEMO_EMAIL, password)
        except Conflict:  # someone signed up as demo@example.com: no demo login
            return None, None
        return password, None
    saved = kept.read_text().strip() if kept.exists() else ""
    if saved and await portal.passwords.verify(login.password_hash, saved):
        return saved, None
    made = await create_login_link(
        accounts.ledger, DEMO_USER, {}, actor="demo", base_url=settings.public_url
    )
    return None, str(made["url"])


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
    portal_password: str | None = None,
    portal_link: str | None = None,
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
    portal = ""
    if portal_password or portal_link:
        secret = (
            portal_password
            if portal_password
            else "(changed in the portal since the first start: kept as you set it)\n"
            f"    forgot it? set a new one (this link works once): {portal_link}"
        )
        portal = f"""
  The customer portal, as the demo user sees it, in a browser:

    {base}/portal/login
    email:    {DEMO_EMAIL}
    password: {secret}
"""
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
{portal}"""
