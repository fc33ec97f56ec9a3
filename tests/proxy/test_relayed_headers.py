"""The upstream headers a client needs reach it (retry-after, the rate-limit family, the
provider's request id), on refusals, whole answers and streams; nothing else does, and never a
hop-by-hop header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from gateway.proxy.relayed_headers import HOP_BY_HOP, RELAYED_NAMES, relayed_headers
from gateway.proxy.scrub import secret_for
from tests.support.gateway import GatewayFactory, RunningGateway, usd
from tests.support.keyed import PROVIDER_KEY, start_keyed
from tests.support.scripted import (
    DONE,
    ScriptedUpstream,
    chat,
    chunk,
    completion,
    send_stream,
    sse,
)

LIMITS = {
    "retry-after": "7",
    "retry-after-ms": "6500",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "6.5s",
    "x-ratelimit-remaining-tokens": "1200",
}
# What a provider also sends and a caller must not get: account details, and hop-by-hop
# fields (RFC 9110 section 7.6.1).
WITHHELD = {
    "openai-organization": "org-operator",
    "openai-project": "proj_operator",
    "openai-processing-ms": "12",
    "keep-alive": "timeout=5",
    "proxy-authenticate": "Basic",
    "upgrade": "h2c",
}
UPSTREAM_ID = "req_upstream_4f1c"


@pytest.fixture
def keyed_gw(
    gateways: GatewayFactory, scripted: ScriptedUpstream, tmp_path: Path
) -> RunningGateway:
    return start_keyed(gateways, scripted, tmp_path)


def headed(status: int, body: Any) -> Any:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        headers = {**LIMITS, **WITHHELD, "x-request-id": UPSTREAM_ID}
        return web.json_response(body, status=status, headers=headers)

    return handler


def assert_relayed(headers: httpx.Headers) -> None:
    for name, value in LIMITS.items():
        assert headers.get(name) == value, name
    assert headers["x-upstream-request-id"] == UPSTREAM_ID
    assert headers["x-request-id"].startswith("req_")  # the gateway's own: the usage record's
    for name in WITHHELD:
        assert name not in headers, name


def test_a_429_reaches_the_client_with_its_retry_and_rate_limit_headers(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}
    scripted.routes["/v1/chat/completions"] = headed(429, error)
    uid, key = keyed_gw.user()
    with pytest.raises(openai.RateLimitError) as err:
        keyed_gw.client(key).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert_relayed(err.value.response.headers)
    assert err.value.request_id == err.value.response.headers["x-request-id"]
    row = keyed_gw.wait_usage(uid, 1)[0]
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")
    assert keyed_gw.balance(uid) == usd("10.00")


def test_a_whole_answer_carries_them_too(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    scripted.routes["/v1/chat/completions"] = headed(200, completion("Hi.", usage))
    _, key = keyed_gw.user()
    raw = keyed_gw.client(key).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "Hi."
    assert_relayed(raw.headers)
    assert int(raw.headers["content-length"]) == len(raw.content)


def test_a_stream_carries_them_from_its_start(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        events = [sse(chunk("Hi.")), sse(chunk(None, "stop")), DONE]
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                **LIMITS,
                **WITHHELD,
                "request-id": UPSTREAM_ID,  # Anthropic's name for it
            }
        )
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    scripted.routes["/v1/chat/completions"] = handler
    _, key = keyed_gw.user()
    with keyed_gw.client(key).chat.completions.with_streaming_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        assert_relayed(response.headers)
        texts = [c.choices[0].delta.content for c in response.parse() if c.choices]
    assert texts == ["Hi.", None]


def test_a_stream_without_such_headers_gets_none(
    keyed_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        return await send_stream(request, [sse(chunk("Hi.")), DONE])

    scripted.routes["/v1/chat/completions"] = handler
    _, key = keyed_gw.user()
    r = httpx.post(
        f"{keyed_gw.base_url}/v1/chat/completions",
        json=chat("hi", stream=True),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200
    assert not [n for n in r.headers if n.startswith(("x-ratelimit", "retry-after", "x-upstream"))]


# -- the allowlist itself ---------------------------------------------------------------------


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


def test_fields_a_connection_header_lists_are_hop_by_hop_and_withheld() -> None:
    got = relayed_headers(
        raw(
            ("X-RateLimit-Reset-Tokens", "1s"),
            ("Retry-After", "3"),
            ("X-Request-Id", "up-1"),
            ("Connection", "keep-alive, X-RateLimit-Reset-Tokens , x-request-id"),
            ("Request-Id", "up-2"),
        )
    )
    assert got == ((b"retry-after", b"3"), (b"x-upstream-request-id", b"up-2"))


def test_the_first_request_id_source_in_order_of_preference_wins() -> None:
    got = relayed_headers(raw(("apim-request-id", "azure"), ("x-request-id", "openai")))
    assert got == ((b"x-upstream-request-id", b"openai"),)


def test_no_allowlisted_name_is_hop_by_hop() -> None:
    names = RELAYED_NAMES | {b"x-ratelimit-limit-requests", b"anthropic-ratelimit-tokens-limit"}
    hop = raw(*((n.decode(), "1") for n in HOP_BY_HOP), ("Proxy-Authorization", "x"))
    assert relayed_headers(hop) == ()
    assert not names & HOP_BY_HOP


def test_a_relayed_value_that_echoes_the_provider_key_is_scrubbed() -> None:
    got = relayed_headers(raw(("x-request-id", f"for {PROVIDER_KEY}")), secret_for(PROVIDER_KEY))
    assert got == ((b"x-upstream-request-id", b"for [redacted]"),)
