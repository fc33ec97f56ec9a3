"""The operator's provider key never reaches a caller or the log (BH-13), end to end: a real
gateway sending the key to a scripted upstream that echoes it back in every place it can."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.support.gateway import GatewayFactory, RunningGateway, usd
from tests.support.keyed import PROVIDER_KEY, masked, start_keyed
from tests.support.scripted import (
    DONE,
    Caller,
    ScriptedUpstream,
    chat,
    chunk,
    completion,
    cost,
    send_stream,
    sse,
)

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.fixture
def keyed_gw(
    gateways: GatewayFactory, scripted: ScriptedUpstream, tmp_path: Path
) -> RunningGateway:
    return start_keyed(gateways, scripted, tmp_path)


def sent_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def refusing(status: int, shown: Any) -> Any:
    """An upstream that refuses the key it received, quoting it as ``shown(key)`` does, in
    the words of OpenAI's 401."""

    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        message = (
            f"Incorrect API key provided: {shown(sent_key(request))}. You can find your API "
            "key at https://platform.openai.com/account/api-keys."
        )
        error = {"message": message, "type": "invalid_request_error", "param": None}
        return web.json_response({"error": {**error, "code": "invalid_api_key"}}, status=status)

    return handler


def leaks(text: str) -> bool:
    return PROVIDER_KEY in text or masked(PROVIDER_KEY) in text or PROVIDER_KEY[-4:] in text


@pytest.mark.parametrize("shown", [masked, lambda key: key], ids=["masked_as_openai_does", "whole"])
@pytest.mark.parametrize("status", [401, 403])
def test_bh13_a_refused_provider_key_is_a_502_that_neither_leaks_nor_blames_the_caller(
    keyed_gw: RunningGateway,
    scripted: ScriptedUpstream,
    caplog: pytest.LogCaptureFixture,
    status: int,
    shown: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    scripted.routes["/v1/chat/completions"] = refusing(status, shown)
    uid, key = keyed_gw.user()
    client = keyed_gw.client(key)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    answer = err.value.response.text
    assert not leaks(answer), answer
    assert json.loads(answer)["error"]["code"] == "upstream_credentials_refused"
    assert "gateway's credentials" in json.loads(answer)["error"]["message"]
    row = keyed_gw.wait_usage(uid, 1)[0]
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")
    assert keyed_gw.balance(uid) == usd("10.00")
    # The operator is told, and the log holds neither the provider key nor the caller's.
    assert "refused the gateway's credentials" in caplog.text
    assert not leaks(caplog.text)
    assert key not in caplog.text


def echoing(status: int) -> Any:
    """An upstream that answers ``status`` with the key whole in its body and a header."""

    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        body = {"error": {"message": f"bad request from {sent_key(request)}", "type": "x"}}
        headers = {"x-request-id": f"req-{sent_key(request)}"}
        return web.json_response(body, status=status, headers=headers)

    return handler


@pytest.mark.parametrize("status", [400, 429, 500])
def test_an_echo_in_another_refusal_is_scrubbed_and_the_status_kept(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream, status: int
) -> None:
    scripted.routes["/v1/chat/completions"] = echoing(status)
    _, key = keyed_gw.user()
    with pytest.raises(openai.APIStatusError) as err:
        keyed_gw.client(key).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == status
    answer = err.value.response
    assert not leaks(answer.text), answer.text
    assert json.loads(answer.text)["error"]["message"] == "bad request from [redacted]"
    assert answer.headers["x-upstream-request-id"] == "req-[redacted]"


def test_an_echo_in_a_whole_answer_is_scrubbed_and_billed_as_reported(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        text = f"Your header was Bearer {sent_key(request)}; its end is ...{PROVIDER_KEY[-4:]}"
        return web.json_response(completion(text, USAGE))

    scripted.routes["/v1/chat/completions"] = handler
    status, answer, row, debit = Caller(keyed_gw).call("chat/completions", chat("hi"))
    assert status == 200
    assert not leaks(answer.decode())
    content = json.loads(answer)["choices"][0]["message"]["content"]
    assert content == "Your header was Bearer [redacted]; its end is [redacted]"
    assert usd(row["cost"]) == debit == cost(10, 5) == 60_000


def split_everywhere(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 23])
def test_an_echo_split_across_stream_reads_is_scrubbed(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream, size: int
) -> None:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        events = sse(chunk(f"Key: {sent_key(request)}. Masked: {masked(sent_key(request))}."))
        events += sse(chunk(None, "stop")) + sse(chunk(usage=USAGE)) + DONE
        return await send_stream(request, split_everywhere(events, size))

    scripted.routes["/v1/chat/completions"] = handler
    body = chat("hi", stream=True, stream_options={"include_usage": True})
    status, answer, row, debit = Caller(keyed_gw).call("chat/completions", body)
    assert status == 200
    assert not leaks(answer.decode())
    first = json.loads(answer.split(b"\n\n")[0].removeprefix(b"data: "))
    assert first["choices"][0]["delta"]["content"] == "Key: [redacted]. Masked: [redacted]."
    assert answer.endswith(DONE)
    assert row["status"] == "ok"
    assert usd(row["cost"]) == debit == cost(10, 5) == 60_000
