"""SIGHUP re-reads models.yaml in the serving process: a good file swaps prices and audits the
change, a bad one changes nothing and audits the refusal."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway import price_reload
from gateway.services import build, shutdown
from gateway.settings import Settings

MODELS = """\
providers:
  p: {{base_url: http://127.0.0.1:9/v1}}
models:
  chat:
    provider: p
    price: {{input: "{price}", output: "1.00"}}
    max_output_tokens: 10
"""


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads_prices_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS.format(price="1.00"))
    settings = Settings.from_env(
        {"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/gw.db", "GATEWAY_MODELS": str(models)}
    )

    async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
        for _ in range(500):
            if await check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    async def main() -> None:
        services = await build(settings)
        await price_reload.record_prices(services.ledger, services.catalog, actor="startup")
        uninstall = price_reload.install_sighup(services)

        async def audited(action: str) -> bool:
            found, _ = await services.ledger.audit.list_audit(
                target=None, action=action, limit=1, offset=0
            )
            return bool(found) and found[0].actor == "sighup"

        try:
            # Without the handler SIGHUP would end the test process: make sure it is there.
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None)
            models.write_text(MODELS.format(price="2.00"))
            os.kill(os.getpid(), signal.SIGHUP)
            await eventually(lambda: audited("models.reload"), "the reload")
            assert services.catalog.models["chat"].price.input == 2 * 10**9
            assert await audited("price.change")

            models.write_text("models: [")
            before = services.catalog
            os.kill(os.getpid(), signal.SIGHUP)
            await eventually(lambda: audited("models.reload_failed"), "the refusal")
            assert services.catalog is before
        finally:
            uninstall()
            await shutdown(services)

    asyncio.run(main())
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
