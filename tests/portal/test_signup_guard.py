"""What stands between a welcome credit and a script (gateway/portal/accounts.py,
throttle.py), on both databases: email syntax, open sign-ups limited per client address, and
invitations refused for the email of an existing user."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.errors import Conflict, RateLimited, Unprocessable
from gateway.ledger.base import Ledger
from gateway.metering.store import MemoryStore
from gateway.portal.accounts import check_email
from gateway.portal.invites import create_invite
from gateway.portal.throttle import SignupLimit
from gateway.records import utcnow
from tests.portal.test_portal_accounts import PASSWORD, portal, refused, run
from tests.support.fixtures import Database

USD = 10**9


@pytest.mark.parametrize(
    "email",
    [
        '"><script>alert(1)</script>@x.example',
        "<ada@example.com>",
        "ada@example.com>",
        "'ada'@example.com",
        '"ada"@example.com',
        "ada@@example.com",
        "ada@exa mple.com",
        "ada\t@example.com",
        "ada\x00@example.com",
        "ad\u202ea@example.com",
        ".ada@example.com",
        "ada.@example.com",
        "a..da@example.com",
        "ada@example",
        "ada@example.c",
        "ada@-example.com",
        "ada@example-.com",
        "ada@example..com",
        "ada@example.123",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "ada@example.com,bob@example.com",
        "(ada)@example.com",
        "ada@[127.0.0.1]",
    ],
)
def test_what_is_not_an_email_address_is_refused(email: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_email(email)
    assert (caught.value.code, caught.value.param) == ("invalid_email", "email")


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        "Ada.Lovelace+gw@mail.example.co.uk",
        "obrien@example.ie",
        "x_y-z@sub-domain.example.org",
        "zoë@exämple.de",
        "user@xn--80ak6aa92e.com",
        "a@b.xn--p1ai",
        "a" * 64 + "@example.com",
    ],
)
def test_ordinary_addresses_pass(email: str) -> None:
    assert check_email(f"  {email} ") == (email, email.casefold())


def test_open_sign_ups_are_limited_per_client_address(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        limit = SignupLimit(limit=2, window=3600)
        accounts = portal(ledger, store, signup="open", welcome_credit=USD, signups=limit)
        await accounts.sign_up("farm1@example.com", PASSWORD, address="6.6.6.6")
        # A refused attempt with a taken address counts too (no faster probing for accounts).
        await refused(
            "email_taken", accounts.sign_up("farm1@example.com", PASSWORD, address="6.6.6.6")
        )
        error = await refused(
            "rate_limit_exceeded",
            accounts.sign_up("farm2@example.com", PASSWORD, address="6.6.6.6"),
        )
        assert isinstance(error, RateLimited)
        assert dict(error.headers)[b"retry-after"] == b"3600"
        assert "too many sign-ups" in error.message
        assert await ledger.logins.find_login("farm2@example.com") is None
        # A bad form does not count, and another address is not held back.
        await refused("invalid_email", accounts.sign_up("nope", PASSWORD, address="7.7.7.7"))
        await accounts.sign_up("farm2@example.com", PASSWORD, address="7.7.7.7")
        await accounts.sign_up("farm3@example.com", PASSWORD, address="7.7.7.7")
        await refused(
            "rate_limit_exceeded",
            accounts.sign_up("farm4@example.com", PASSWORD, address="7.7.7.7"),
        )
        users, _ = await ledger.directory.list_users(query="farm", after=None, limit=10)
        assert len(users) == 3
        # The window ends: the address may sign up again.
        later = utcnow() + timedelta(seconds=3601)
        assert await ledger.logins.lock_ends(["signup:6.6.6.6"], now=later) is None

    run(database, scenario)


def test_invited_sign_ups_and_a_zero_limit_are_not_counted(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        one = SignupLimit(limit=1, window=3600)
        invited = portal(ledger, store, signup="invite", signups=one)
        for n in range(3):
            made = await create_invite(ledger, {}, actor="admin", base_url=None)
            await invited.sign_up(
                f"i{n}@example.com", PASSWORD, invite=made["token"], address="1.1.1.1"
            )
        unlimited = portal(ledger, store, signup="open", signups=SignupLimit(limit=0))
        for n in range(3):
            await unlimited.sign_up(f"o{n}@example.com", PASSWORD, address="1.1.1.1")

    run(database, scenario)


def test_an_invitation_for_an_existing_users_email_is_refused(database: Database) -> None:
    async def scenario(ledger: Ledger, store: MemoryStore) -> None:
        await ledger.directory.create_user(user_id="carol", email="Carol@Example.com")
        error = await refused(
            "email_has_user",
            create_invite(ledger, {"email": "carol@example.com"}, actor="admin", base_url=None),
        )
        assert isinstance(error, Conflict)
        assert "carol" in error.message
        assert "login-link carol" in error.message
        # A portal account has the address: refused the same way.
        accounts = portal(ledger, store, signup="open")
        signed = await accounts.sign_up("dave@example.com", PASSWORD)
        error = await refused(
            "email_has_user",
            create_invite(ledger, {"email": "DAVE@example.com"}, actor="admin", base_url=None),
        )
        assert signed.id in error.message
        invites, _ = await ledger.logins.list_invites(limit=5, offset=0)
        assert invites == []
        # Another address (one that merely contains carol's) is fine.
        await create_invite(ledger, {"email": "xcarol@example.com"}, actor="admin", base_url=None)

    run(database, scenario)
