"""`gateway serve --demo` prints how to open the portal as the demo user, and it works: the
printed email and password sign in (in Chromium) and the overview shows the demo's credit.
A restart prints the same password; once the user changed it in the portal, a restart keeps
their password (it used to put the printed one back) and prints a one-time link instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.support.gateway import free_port
from tests.support.readme import ROOT
from tests.support.waiting import wait_until

MOCK_URL = "http://127.0.0.1:9009/v1"
CHOSEN = "the user's own password"


def start(cwd: Path, port: int, out: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "STRIPE_"))}
    env.update(PYTHONPATH=str(ROOT), GATEWAY_PORT=str(port))
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--demo"],
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    wait_until(
        lambda: (proc.poll(), out.read_text()),
        lambda seen: seen[0] is not None or "password:" in seen[1],
        wanted="the demo's banner",
        show=lambda seen: f"exit {seen[0]}; printed:\n{seen[1]}",
        timeout=30,
    )
    wait_until(
        lambda: _health(f"http://127.0.0.1:{port}"),
        lambda code: code == 200,
        wanted="the demo answering",
        timeout=30,
    )
    return proc


def _health(base: str) -> int | str:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


def printed(out: Path, field: str) -> str:
    return out.read_text().split(f"{field}:", 1)[1].split()[0]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_the_demo_prints_a_portal_sign_in_that_works(tmp_path: Path, page: Page) -> None:
    shipped = (ROOT / "models.yaml").read_text()
    (tmp_path / "models.yaml").write_text(
        shipped.replace(MOCK_URL, f"http://127.0.0.1:{free_port()}/v1")
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(tmp_path, port, tmp_path / "first.out")
    try:
        out = tmp_path / "first.out"
        assert f"{base}/portal/login" in out.read_text()
        email, password = printed(out, "email"), printed(out, "password")
        page.goto(f"{base}/portal/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base}/portal")
        expect(page.locator("#balance")).to_have_text("$10.00")
        page.goto(f"{base}/portal/quickstart")
        expect(page.locator("#base-url")).to_have_text(f"{base}/v1")
    finally:
        stop(proc)
    assert (tmp_path / "gateway.db.demo-portal-password").stat().st_mode & 0o777 == 0o600
    again = start(tmp_path, port, tmp_path / "second.out")
    try:
        assert printed(tmp_path / "second.out", "password") == password
        sign_in(page, base, email, password)
        page.goto(f"{base}/portal/account")
        page.get_by_label("Current password").fill(password)
        page.get_by_label("New password (8 characters or more)").fill(CHOSEN)
        page.get_by_label("New password again").fill(CHOSEN)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Password changed.")).to_be_visible()
    finally:
        stop(again)
    third = start(tmp_path, port, tmp_path / "third.out")
    try:
        banner = (tmp_path / "third.out").read_text()
        assert "password: (changed in the portal since the first start" in banner
        assert password not in banner
        link = banner.split("this link works once): ", 1)[1].split()[0]
        assert link.startswith(f"{base}/portal/set-password?token=")
        sign_in(page, base, email, CHOSEN)  # the restart left the user's password alone
        page.context.clear_cookies()
        page.goto(link)
        expect(page.get_by_label("Email")).to_have_value(email)
        page.get_by_label("New password (8 characters or more)").fill(password)
        page.get_by_label("New password again").fill(password)
        page.get_by_role("button", name="Save and sign in").click()
        page.wait_for_url(f"{base}/portal?login_set=1")
    finally:
        stop(third)
    # Set back to the kept password through the link: the next start prints it again.
    fourth = start(tmp_path, port, tmp_path / "fourth.out")
    try:
        assert printed(tmp_path / "fourth.out", "password") == password
    finally:
        stop(fourth)


def sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.context.clear_cookies()  # signed out, whatever came before
    page.goto(f"{base}/portal/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/portal")
