"""End to end through the official openai SDK: a real gateway, a real mock upstream."""

from __future__ import annotations

import concurrent.futures
import re

import httpx
import openai
import pytest

from gateway.pricing import Price, worst_case
from tests.support.gateway import PROVIDER_KEY, usd

CHAT = {"input": 2_500, "cached": 1_250, "output": 10_000}  # nano-USD per token for "chat"


def expected_cost(prompt: int, completion: int, cached: int = 0) -> int:
    # ceil(sum(tokens * price per 1M) / 1M) in nano-USD; "chat" prices divide exactly.
    return (prompt - cached) * CHAT["input"] + cached * CHAT["cached"] + completion * CHAT["output"]


def test_chat_call_returns_upstream_content_and_debits_exact_usage(gw):
    uid, key = gw.user("10.00")
    # Ten words: the mock's count is a plausible count of this prompt, so it is billed as is.
    content = "one two three four five six seven eight nine ten [[mock:cached=2]]"
    reply = gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": content}]
    )
    assert reply.choices[0].message.content == "Hello from the mock model."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 5)
    rows = gw.wait_usage(uid, 1)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["usage_source"]) == ("ok", "upstream")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (10, 2, 5)
    assert usd(row["cost"]) == expected_cost(10, 5, cached=2)
    assert gw.balance(uid) == usd("10.00") - expected_cost(10, 5, cached=2)


def test_streamed_chat_relays_chunks_unchanged_and_debits_usage(gw):
    uid, key = gw.user()
    stream = gw.client(key).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "a b c d e f g h [[mock:chunks=20]]"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f" w{i}" for i in range(20))
    # The client did not ask for usage, so the usage-only chunk is not shown to it.
    assert all(c.choices for c in chunks)
    row = gw.wait_usage(uid, 1)[0]
    assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == (
        "upstream",
        8,
        20,
    )
    assert gw.balance(uid) == usd("10.00") - expected_cost(8, 20)


def test_usage_chunk_is_shown_only_when_the_client_asked(gw):
    _, key = gw.user()
    stream = gw.client(key).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5


def test_upstream_sees_its_own_key_and_the_mapped_model(gw, upstream):
    _, key = gw.user()
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    seen = upstream.requests()[-1]
    assert seen["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert key not in str(seen)
    assert seen["body"]["model"] == "mock-gpt"


def test_completions_stream_and_not(gw):
    uid, key = gw.user()
    client = gw.client(key)
    done = client.completions.create(model="chat", prompt="say it")
    assert done.choices[0].text == "Hello from the mock model."
    pieces = [
        c.choices[0].text
        for c in client.completions.create(model="chat", prompt="say it", stream=True)
        if c.choices
    ]
    assert "".join(pieces) == "Hello from the mock model."
    rows = gw.wait_usage(uid, 2)
    assert [r["usage_source"] for r in rows] == ["upstream", "upstream"]
    assert sum(usd(r["cost"]) for r in rows) == 2 * expected_cost(2, 5)


def test_embeddings_debit_input_tokens_only(gw):
    uid, key = gw.user()
    result = gw.client(key).embeddings.create(model="embed", input=["one two", "three"])
    assert len(result.data) == 2
    row = gw.wait_usage(uid, 1)[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 0)
    assert usd(row["cost"]) == 3 * 20  # $0.02 per 1M tokens = 20 nano-USD per token
    assert gw.balance(uid) == usd("10.00") - 60


def test_responses_api_stream_and_not(gw):
    uid, key = gw.user()
    client = gw.client(key)
    done = client.responses.create(model="chat", input="tell me")
    assert done.output_text == "Hello from the mock model."
    events = list(client.responses.create(model="chat", input="tell me", stream=True))
    assert events[-1].type == "response.completed"
    rows = gw.wait_usage(uid, 2)
    assert {r["usage_source"] for r in rows} == {"upstream"}
    assert sum(usd(r["cost"]) for r in rows) == 2 * expected_cost(2, 5)


def test_models_lists_only_the_catalog(gw):
    _, key = gw.user()
    ids = {m.id for m in gw.client(key).models.list()}
    assert ids == {"chat", "cheap", "embed", "nowhere"}


def test_insufficient_balance_is_402_with_what_fits_and_charges_nothing(gw):
    uid, key = gw.user("0.001")
    with pytest.raises(openai.APIStatusError) as err:
        gw.client(key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
        )
    assert err.value.status_code == 402
    body = err.value.body
    assert body["code"] == "insufficient_quota"
    most = int(re.search(r"max_tokens to (\d+)", body["message"]).group(1))
    price = Price(input=usd("2.50"), cached_input=usd("1.25"), output=usd("10.00"))
    prompt = int(re.search(r"\((\d+) prompt tokens", body["message"]).group(1))
    assert worst_case(price, prompt, most) <= usd("0.001") < worst_case(price, prompt, most + 1)
    assert gw.usage(uid) == []
    assert gw.balance(uid) == usd("0.001")


def test_unknown_and_revoked_keys_are_401(gw):
    uid, key = gw.user()
    with pytest.raises(openai.AuthenticationError):
        gw.client("sk-gw-nope").chat.completions.create(model="chat", messages=[])
    key_id = gw.admin.get(f"/admin/users/{uid}/keys").json()["data"][0]["id"]
    assert gw.admin.delete(f"/admin/keys/{key_id}").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gw.client(key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )


def test_unknown_model_is_404(gw):
    _, key = gw.user()
    with pytest.raises(openai.NotFoundError) as err:
        gw.client(key).chat.completions.create(model="gpt-nope", messages=[])
    assert err.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
def test_malformed_or_non_object_body_is_400(gw, body):
    uid, key = gw.user()
    r = httpx.post(
        f"{gw.base_url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["x-request-id"].startswith("req_")
    assert gw.usage(uid) == []


def test_body_over_the_limit_is_413(gateways):
    gw = gateways.start(GATEWAY_MAX_BODY_BYTES="2048")
    _, key = gw.user()
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 4000}]}
    r = httpx.post(
        f"{gw.base_url}/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_concurrent_calls_never_overspend_and_debit_equals_usage(gw):
    # $0.05 of credit; each call reserves prompt + 100 output tokens on "cheap" and really
    # costs far less, so many fit, but reservations must never exceed the balance.
    uid, key = gw.user("0.00005")
    client = gw.client(key)

    def call(_: int) -> str:
        try:
            client.chat.completions.create(
                model="cheap", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            )
            return "ok"
        except openai.APIStatusError as exc:
            return str(exc.status_code)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(80)))
    served = results.count("ok")
    assert served >= 1 and set(results) <= {"ok", "402"}
    rows = gw.wait_usage(uid, served)
    assert len(rows) == served
    assert gw.balance(uid) >= 0
    assert gw.balance(uid) == usd("0.00005") - sum(usd(r["cost"]) for r in rows)
