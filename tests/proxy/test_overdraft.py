"""A call that costs more than it reserved (a provider reporting more than the worst case) is
billed whole: the record marks the overdraft, /metrics counts it, the balance may go below
zero and the user is refused (402) until it is positive again."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from typing import Any

import httpx
from aiohttp import web

from tests.support.gateway import RunningGateway, usd
from tests.support.scripted import Caller, ScriptedUpstream, chat, completion, cost
from tests.support.waiting import wait_until

SURPRISE = {"prompt_tokens": 2000, "completion_tokens": 10}  # far above a "hi" prompt's bound


def metric(gw: RunningGateway, name: str) -> int:
    text = httpx.get(f"{gw.base_url}/metrics").text
    found = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert found is not None, text
    return int(found.group(1))


def test_a_call_above_its_reservation_is_billed_whole_then_the_user_is_refused(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    gw = scripted_gw
    released = threading.Event()

    async def held(request: web.Request, body: Any) -> web.StreamResponse:
        # Answer only once the test has read the reservation of the call in flight.
        await asyncio.get_running_loop().run_in_executor(None, released.wait, 20)
        return web.json_response(completion("ok", SURPRISE))

    scripted.routes["/v1/chat/completions"] = held
    caller = Caller(gw, credit="0.001")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(caller.call, "chat/completions", chat("hi", max_tokens=10))
        reserved = wait_until(
            lambda: usd(gw.admin.get(f"/admin/users/{caller.user}").json()["reserved"]),
            lambda held: held > 0,
            wanted="the call's reservation",
            show=str,
        )
        released.set()
        status, _, row, debit = pending.result(timeout=30)
    assert status == 200
    billed = cost(2000, 10)
    assert reserved <= usd("0.001") < billed  # the surprise: far above the worst case
    assert usd(row["cost"]) == debit == billed
    assert usd(row["overdraft"]) == billed - reserved
    assert gw.balance(caller.user) == usd("0.001") - billed < 0
    assert metric(gw, "gateway_overdraft_total") == 1
    assert metric(gw, "gateway_overdraft_nanousd_total") == billed - reserved

    scripted.routes["/v1/chat/completions"] = lambda request, body: _answer()
    refused = httpx.post(
        f"{gw.base_url}/v1/chat/completions",
        json=chat("hi", max_tokens=1),
        headers={"Authorization": f"Bearer {caller.key}"},
    )
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_quota"

    # Paying the debt back and some makes the balance positive: calls are admitted again.
    credited = gw.admin.post(f"/admin/users/{caller.user}/credits", json={"amount": "0.01"})
    assert credited.status_code in (200, 201), credited.text
    status, _, row, _ = caller.call("chat/completions", chat("hi", max_tokens=1))
    assert status == 200
    assert usd(row["overdraft"]) == 0


async def _answer() -> web.StreamResponse:
    return web.json_response(completion("ok", {"prompt_tokens": 8, "completion_tokens": 1}))
