"""The portal's account service (gateway/portal/accounts.py) on both databases: sign-up modes,
the welcome credit granted once through the money path, log-in with argon2id (rehash), the
throttle per email and per address, password change, invitations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher

from gateway.errors import Conflict, Forbidden, GatewayError, RateLimited, Unauthorized
from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.metering.store import MemoryStore
from gateway.portal.accounts import PortalAccounts, welcome_reference
from gateway.portal.invites import create_invite, list_invites
from gateway.portal.passwords import Passwords
from gateway.portal.throttle import Throttle
from gateway.records import utcnow
from tests.ledger.books import USD
from tests.support.fixtures import Database

# Cheap parameters keep the suite fast; the production defaults are argon2-cffi's.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"

Scenario = Callable[[Ledger, MemoryStore], Awaitable[None]]


def run(database: Database, scenario: Scenario) -> None:
    async def main() -> None:
        ledger = await open_ledger(database.url)
        try:
            await scenario(ledger, MemoryStore(ledger.journal.balance))
        finally:
            await ledger.close()

    asyncio.run(main())


def portal(ledger: Ledger, store: MemoryStore, **settings: Any) -> PortalAccounts:
    return PortalAccounts(ledger, store, Passwords(CHEAP), **settings)


async def refused(code: str, call: Awaitable[object]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await call
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_closed_sign_up_refuses_and_creates_nothing(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store)  # closed is the default
        error = await refused("signup_closed", accounts.sign_up("a@example.com", PASSWORD))
        assert isinstance(error, Forbidden)
        users, _ = await ledger.directory.list_users(query=None, after=None, limit=5)
        assert users == []

    run(database, scenario)


def test_open_sign_up_grants_the_welcome_credit_once(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="open", welcome_credit=3 * USD)
        user = await accounts.sign_up("  Ada@Example.com ", PASSWORD)
        assert user.email == "Ada@Example.com"
        assert await store.snapshot(user.id) == (3 * USD, 0)
        # Retried sign-up (another case of the same address): refused, nothing granted.
        await refused("email_taken", accounts.sign_up("ada@example.COM", PASSWORD))
        # Log-ins post the grant again, and the ledger answers with the first entry.
        for _ in range(2):
            assert (await accounts.log_in("ADA@example.com", PASSWORD, address="10.0.0.1")).id == (
                user.id
            )
        entries = await ledger.journal.list_entries(user.id)
        assert [(e.kind, e.amount, e.reference) for e in entries] == [
            ("grant", 3 * USD, welcome_reference(user.id))
        ]
        assert await store.snapshot(user.id) == (3 * USD, 0)
        events, _ = await ledger.audit.list_audit(
            target=user.id, action="user.signup", limit=5, offset=0
        )
        assert [(e.actor, e.amount) for e in events] == [("portal", 3 * USD)]

    run(database, scenario)


def test_a_welcome_credit_cut_off_by_a_crash_is_granted_at_the_next_log_in(
    database: Database,
) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="open", welcome_credit=2 * USD)
        # The account committed, the process died before the grant: as if sign-up stopped
        # after create_account.
        _, login = await ledger.logins.create_account(
            user_id="u1",
            email="b@example.com",
            email_key="b@example.com",
            password_hash=await Passwords(CHEAP).hash(PASSWORD),
            welcome_credit=2 * USD,
        )
        assert await ledger.journal.list_entries("u1") == []
        # Changing the setting later does not change what this sign-up was promised.
        later = portal(ledger, store, signup="open", welcome_credit=50 * USD)
        await later.log_in("b@example.com", PASSWORD, address=None)
        assert await store.snapshot("u1") == (2 * USD, 0)
        assert accounts.welcome_credit == login.welcome_credit

    run(database, scenario)


def test_bad_email_or_password_is_refused_with_the_field_named(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="open")
        for email in ("", "no-at-sign", "a@b", "a b@example.com", "x" * 250 + "@example.com"):
            error = await refused("invalid_email", accounts.sign_up(email, PASSWORD))
            assert error.param == "email"
        for password in ("short", "x" * 257, None, 12345678):
            error = await refused("invalid_password", accounts.sign_up("a@example.com", password))
            assert error.param == "password"
        assert await ledger.logins.find_login("a@example.com") is None

    run(database, scenario)


def test_invite_sign_up_needs_a_fresh_invitation_used_once(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="invite", welcome_credit=USD)
        made = await create_invite(ledger, {}, actor="admin", base_url="https://gw.example.com/")
        assert made["url"] == f"https://gw.example.com/portal/signup?invite={made['token']}"
        await refused("invite_required", accounts.sign_up("a@example.com", PASSWORD))
        await refused("invite_refused", accounts.sign_up("a@example.com", PASSWORD, invite="inv-x"))
        user = await accounts.sign_up("a@example.com", PASSWORD, invite=made["token"])
        await refused(
            "invite_refused", accounts.sign_up("b@example.com", PASSWORD, invite=made["token"])
        )
        for_bob = await create_invite(
            ledger,
            {"email": "Bob@example.com", "expires_in_days": "2"},
            actor="admin",
            base_url=None,
        )
        assert for_bob["url"].startswith("/portal/signup?invite=")
        await refused(
            "invite_refused", accounts.sign_up("eve@example.com", PASSWORD, invite=for_bob["token"])
        )
        await accounts.sign_up("BOB@example.com", PASSWORD, invite=for_bob["token"])
        listed = await list_invites(ledger, {})
        assert [(i["email"], i["used_by"] is not None) for i in listed["data"]] == [
            ("Bob@example.com", True),
            (None, True),
        ]
        assert "token" not in listed["data"][0]
        assert user.id == listed["data"][1]["used_by"]
        for bad in ({"expires_in_days": "0"}, {"expires_in_days": 366}, {"email": "nope"}):
            await refused(
                "invalid_parameter" if "expires_in_days" in bad else "invalid_email",
                create_invite(ledger, bad, actor="admin", base_url=None),
            )

    run(database, scenario)


def test_log_in_refuses_a_wrong_password_and_an_unknown_email_alike(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="open")
        await accounts.sign_up("a@example.com", PASSWORD)
        wrong = await refused(
            "invalid_credentials", accounts.log_in("a@example.com", "wrong pass", address=None)
        )
        unknown = await refused(
            "invalid_credentials", accounts.log_in("z@example.com", PASSWORD, address=None)
        )
        assert isinstance(wrong, Unauthorized)
        assert wrong.message == unknown.message
        await refused("invalid_credentials", accounts.log_in(None, None, address=None))

    run(database, scenario)


def test_a_hash_made_with_old_parameters_is_replaced_at_log_in(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        await portal(ledger, store, signup="open").sign_up("a@example.com", PASSWORD)
        before = await ledger.logins.find_login("a@example.com")
        assert before is not None
        stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
        accounts = PortalAccounts(ledger, store, Passwords(stronger), signup="open")
        await accounts.log_in("a@example.com", PASSWORD, address=None)
        after = await ledger.logins.find_login("a@example.com")
        assert after is not None
        assert after.password_hash != before.password_hash
        assert after.password_hash.startswith("$argon2id$")
        assert "t=2" in after.password_hash
        assert not stronger.check_needs_rehash(after.password_hash)
        assert after.password_changed_at == before.password_changed_at
        await accounts.log_in("a@example.com", PASSWORD, address=None)

    run(database, scenario)


def test_failed_log_ins_lock_the_email_then_the_address(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        throttle = Throttle(per_email=3, per_address=5, window=600, lockout=600)
        accounts = portal(ledger, store, signup="open", throttle=throttle)
        await accounts.sign_up("a@example.com", PASSWORD)
        await accounts.sign_up("b@example.com", PASSWORD)
        for _ in range(3):
            await refused(
                "invalid_credentials", accounts.log_in("a@example.com", "x" * 9, address="1.1.1.1")
            )
        # Locked: even the right password is refused, without being checked.
        locked = await refused(
            "rate_limit_exceeded", accounts.log_in("a@example.com", PASSWORD, address="2.2.2.2")
        )
        assert isinstance(locked, RateLimited)
        assert dict(locked.headers)[b"retry-after"] == b"600"
        # Another email from the address still works until the address reaches its limit.
        await accounts.log_in("b@example.com", PASSWORD, address="1.1.1.1")
        for _ in range(2):
            await refused(
                "invalid_credentials", accounts.log_in("c@example.com", "x" * 9, address="1.1.1.1")
            )
        await refused(
            "rate_limit_exceeded", accounts.log_in("b@example.com", PASSWORD, address="1.1.1.1")
        )
        # From another address b is fine; a's lock ends after the lockout.
        await accounts.log_in("b@example.com", PASSWORD, address="3.3.3.3")
        assert (
            await ledger.logins.lock_ends(
                ["email:a@example.com"], now=utcnow() + timedelta(seconds=601)
            )
            is None
        )

    run(database, scenario)


def test_a_successful_log_in_clears_the_email_count_not_the_address(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        throttle = Throttle(per_email=2, per_address=3, window=600, lockout=600)
        accounts = portal(ledger, store, signup="open", throttle=throttle)
        await accounts.sign_up("a@example.com", PASSWORD)
        await refused(
            "invalid_credentials", accounts.log_in("a@example.com", "x" * 9, address="9.9.9.9")
        )
        await accounts.log_in("a@example.com", PASSWORD, address="9.9.9.9")
        await refused(
            "invalid_credentials", accounts.log_in("a@example.com", "x" * 9, address="9.9.9.9")
        )
        await accounts.log_in("a@example.com", PASSWORD, address="8.8.8.8")  # email: 1 of 2
        await refused(
            "invalid_credentials", accounts.log_in("a@example.com", "x" * 9, address="9.9.9.9")
        )
        # The address saw its third failure: locked, whatever the email.
        await refused(
            "rate_limit_exceeded", accounts.log_in("a@example.com", PASSWORD, address="9.9.9.9")
        )

    run(database, scenario)


def test_password_change_needs_the_current_password(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store, signup="open")
        user = await accounts.sign_up("a@example.com", PASSWORD)
        await refused(
            "invalid_credentials", accounts.change_password(user.id, "wrong one", "new password 1")
        )
        await refused("invalid_password", accounts.change_password(user.id, PASSWORD, "short"))
        login = await accounts.change_password(user.id, PASSWORD, "new password 1")
        assert login.password_changed_at > login.created_at
        await refused(
            "invalid_credentials", accounts.log_in("a@example.com", PASSWORD, address=None)
        )
        await accounts.log_in("a@example.com", "new password 1", address=None)
        events, _ = await ledger.audit.list_audit(
            target=user.id, action="password.change", limit=5, offset=0
        )
        assert [e.actor for e in events] == [f"user:{user.id}"]
        await refused("login_not_found", accounts.change_password("nobody", PASSWORD, "x" * 10))

    run(database, scenario)


def test_a_login_is_added_to_an_existing_user(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        accounts = portal(ledger, store)  # closed sign-up does not stop the operator
        await ledger.directory.create_user(user_id="demo", email=None)
        await accounts.add_login("demo", "demo@example.com", PASSWORD)
        assert (await accounts.log_in("demo@example.com", PASSWORD, address=None)).id == "demo"
        error = await refused("email_taken", accounts.add_login("demo", "x@example.com", PASSWORD))
        assert isinstance(error, Conflict)
        await refused("user_not_found", accounts.add_login("ghost", "g@example.com", PASSWORD))

    run(database, scenario)
