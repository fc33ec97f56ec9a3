"""What a call costs when something goes wrong: upstream errors, cuts, disconnects."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import openai
import pytest

from tests.support.gateway import usd


def test_upstream_5xx_is_passed_on_and_charges_nothing(gw):
    uid, key = gw.user()
    with pytest.raises(openai.InternalServerError) as err:
        gw.client(key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "[[mock:status=503]]"}]
        )
    assert err.value.status_code == 503
    assert err.value.body["type"] == "server_error"
    row = gw.wait_usage(uid, 1)[0]
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")
    assert gw.balance(uid) == usd("10.00")
    assert gw.admin.get(f"/admin/users/{uid}").json()["reserved"] == "0.00"


def test_upstream_4xx_is_passed_on_with_its_body(gw):
    uid, key = gw.user()
    with pytest.raises(openai.BadRequestError) as err:
        gw.client(key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "[[mock:status=400]]"}]
        )
    assert err.value.body["type"] == "invalid_request_error"
    assert gw.balance(uid) == usd("10.00")


def test_unreachable_upstream_is_502_and_charges_nothing(gw):
    uid, key = gw.user()
    with pytest.raises(openai.APIStatusError) as err:
        gw.client(key).chat.completions.create(
            model="nowhere", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 502
    assert gw.wait_usage(uid, 1)[0]["status"] == "upstream_unreachable"
    assert gw.balance(uid) == usd("10.00")


def test_a_provider_whose_key_is_unset_is_refused_naming_the_variable_and_not_listed(
    gateways, upstream, caplog
):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = gateways.start(MOCK_PROVIDER_KEY="")
    [started] = [r.getMessage() for r in caplog.records if "MOCK_PROVIDER_KEY" in r.getMessage()]
    assert started.startswith("MOCK_PROVIDER_KEY is not set: its provider is never called; 3")
    assert "(chat, cheap, embed)" in started
    uid, key = gw.user()
    client = gw.client(key)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503
    assert err.value.body["code"] == "provider_not_configured"
    assert err.value.body["message"] == (
        "model `chat` cannot be served: MOCK_PROVIDER_KEY is not set on the gateway"
    )
    assert upstream.requests() == []  # never sent without its key
    # Refused before admission: nothing reserved, nothing recorded.
    assert gw.usage(uid) == []
    assert gw.balance(uid) == usd("10.00")
    assert gw.admin.get(f"/admin/users/{uid}").json()["reserved"] == "0.00"
    # Only models that can serve a call are offered; a provider needing no key stays listed.
    assert [m.id for m in client.models.list()] == ["nowhere"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("chat")


KEYLESS = """\
currency: usd
providers:
  keyless: {{base_url: "{base}", api_key_env: UNSET_IN_THIS_TEST}}
  mock: {{base_url: "{base}", api_key_env: MOCK_PROVIDER_KEY}}
models:
  fallback:
    price: {{input: "1.00", output: "1.00"}}
    max_output_tokens: 100
    deployments:
      - {{provider: keyless, upstream_model: never-sent}}
      - {{provider: mock, upstream_model: mock-gpt, priority: 2}}
  stranded:
    provider: keyless
    price: {{input: "1.00", output: "1.00"}}
    max_output_tokens: 100
"""


def test_a_deployment_whose_key_is_unset_is_passed_over(gateways, upstream, tmp_path):
    path = tmp_path / "keyless.yaml"
    path.write_text(KEYLESS.format(base=upstream.base_url))
    gw = gateways.start(GATEWAY_MODELS=str(path))
    uid, key = gw.user()
    client = gw.client(key)
    client.chat.completions.create(model="fallback", messages=[{"role": "user", "content": "x"}])
    assert [r["body"]["model"] for r in upstream.requests()] == ["mock-gpt"]
    assert gw.wait_usage(uid, 1)[0]["deployment"] == "mock/mock-gpt"
    attempts = [
        line
        for line in httpx.get(f"{gw.base_url}/metrics").text.splitlines()
        if line.startswith("gateway_upstream_attempts_total{")
    ]
    assert attempts == [
        'gateway_upstream_attempts_total{model="fallback",deployment="mock/mock-gpt",'
        'result="answered"} 1'
    ]
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(
            model="stranded", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 503
    assert "UNSET_IN_THIS_TEST is not set" in err.value.body["message"]
    assert [m.id for m in client.models.list()] == ["fallback"]


def test_a_model_of_the_wrong_kind_is_named_with_its_article(gw):
    _, key = gw.user()
    with pytest.raises(openai.BadRequestError) as err:
        gw.client(key).chat.completions.create(
            model="embed", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.body["message"] == (
        "model `embed` is an embedding model and cannot serve /v1/chat/completions"
    )
    with pytest.raises(openai.BadRequestError) as err:
        gw.client(key).embeddings.create(model="chat", input="x")
    assert err.value.body["message"] == (
        "model `chat` is a chat model and cannot serve /v1/embeddings"
    )


def test_upstream_timeout_is_504(gateways):
    gw = gateways.start(GATEWAY_UPSTREAM_TIMEOUT="0.3")
    uid, key = gw.user()
    with pytest.raises(openai.APIStatusError) as err:
        gw.client(key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "[[mock:delay=2]]"}]
        )
    assert err.value.status_code == 504
    assert gw.wait_usage(uid, 1)[0]["status"] == "upstream_timeout"
    assert gw.balance(uid) == usd("10.00")


def test_upstream_without_usage_is_billed_from_local_counts(gw):
    uid, key = gw.user()
    client = gw.client(key)
    client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "[[mock:no_usage=1]] hi"}]
    )
    list(
        client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "[[mock:no_usage=1]] hi"}],
            stream=True,
        )
    )
    rows = gw.wait_usage(uid, 2)
    for row in rows:
        assert row["usage_source"] == "counted"
        assert row["prompt_tokens"] > 0
        assert row["completion_tokens"] >= 5  # "Hello from the mock model." counted locally
        assert usd(row["cost"]) > 0
    assert gw.balance(uid) == usd("10.00") - sum(usd(r["cost"]) for r in rows)


def test_stream_cut_by_upstream_bills_what_was_produced(gw):
    uid, key = gw.user()
    stream = gw.client(key).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "[[mock:chunks=10]] [[mock:cut_after=4]]"}],
        stream=True,
    )
    received = []
    try:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    except openai.APIError:
        pass
    assert received == [" w0", " w1", " w2", " w3"]
    row = gw.wait_usage(uid, 1)[0]
    assert (row["status"], row["usage_source"]) == ("upstream_cut", "counted")
    assert row["completion_tokens"] >= 4
    assert gw.balance(uid) == usd("10.00") - usd(row["cost"])
    assert gw.admin.get(f"/admin/users/{uid}").json()["reserved"] == "0.00"


def test_client_disconnect_mid_stream_bills_what_was_sent(gw, upstream):
    uid, key = gw.user()
    host, port = gw.base_url.removeprefix("http://").split(":")
    body = (
        b'{"model":"chat","stream":true,"messages":[{"role":"user","content":'
        b'"[[mock:chunks=50]] [[mock:chunk_delay=0.05]]"}]}'
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    seen = b""
    while seen.count(b"data:") < 5:
        seen += sock.recv(65536)
    sock.close()
    row = gw.wait_usage(uid, 1)[0]
    assert row["status"] == "client_disconnected"
    assert row["usage_source"] == "counted"
    assert 4 <= row["completion_tokens"] < 50
    assert usd(row["cost"]) > 0
    assert gw.balance(uid) == usd("10.00") - usd(row["cost"])
    assert gw.admin.get(f"/admin/users/{uid}").json()["reserved"] == "0.00"


def test_every_response_carries_a_request_id(gw):
    _, key = gw.user()
    for r in (
        httpx.get(f"{gw.base_url}/healthz"),
        httpx.get(f"{gw.base_url}/me", headers={"Authorization": f"Bearer {key}"}),
        httpx.get(f"{gw.base_url}/nope"),
    ):
        assert r.headers["x-request-id"]
    raw = gw.client(key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")


def test_reservation_is_released_after_each_call(gw):
    uid, key = gw.user()
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    deadline = time.monotonic() + 5
    while gw.admin.get(f"/admin/users/{uid}").json()["reserved"] != "0.00":
        assert time.monotonic() < deadline
        time.sleep(0.05)
