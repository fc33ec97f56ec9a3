"""A client that leaves a stream once its answer has ended is billed as the stream itself
(newcomer trial of issue 11): the openai SDK raises at an in-band error event and closes, and
a client may close at the finish chunk while the usage report is still on its way. And a last
event the upstream ends without its blank line reaches the client as an event it dispatches.

Each answer is a recording the mock upstream replays over a real socket, ``chunk_delay``
seconds between pieces; the client is the openai SDK. Model `m`: $1 in, $10 out per 1M tokens.
"""

from __future__ import annotations

import openai
import pytest

from gateway.mock.replay import Recording
from tests.support.gateway import usd
from tests.support.replayed import (  # noqa: F401  (relay_fixture: the `relay` fixture)
    CREDIT,
    SSE,
    Relay,
    raw_chat,
    relay_fixture,
    streamed,
)
from tests.support.scripted import DONE, chunk, cost, sse

QUOTA = {"error": {"message": "quota exceeded", "type": "insufficient_quota", "code": "quota"}}
USAGE = {"prompt_tokens": 9, "completion_tokens": 500, "total_tokens": 509}


def paced(*pieces: bytes, delay: float) -> Recording:
    return Recording(headers=(SSE,), chunks=pieces, chunk_delay=delay)


def call(relay: Relay, recording: Recording, *, stop_at_finish: bool = False) -> tuple[str, dict]:
    """Streams a chat call through the SDK as an application would; returns the text read and
    the usage row. With ``stop_at_finish`` it closes the stream at the finish chunk."""
    name = relay.mock.record(recording)
    uid, key = relay.gw.user(CREDIT)
    client = relay.gw.client(key)
    text = ""
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"hi [[mock:replay={name}]]"}], stream=True
    )
    with stream:
        for piece in stream:
            if piece.choices:
                text += piece.choices[0].delta.content or ""
                if stop_at_finish and piece.choices[0].finish_reason:
                    break
    [row] = relay.gw.wait_usage(uid, 1)
    assert usd(CREDIT) - relay.gw.balance(uid) == usd(row["cost"])
    return text, row


def test_the_call_behind_an_sdk_raising_at_an_error_event_is_an_upstream_error(
    relay: Relay,
) -> None:
    name = relay.mock.record(paced(sse(QUOTA), DONE, delay=0.3))
    uid, key = relay.gw.user(CREDIT)
    stream = relay.gw.client(key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"hi [[mock:replay={name}]]"}], stream=True
    )
    with pytest.raises(openai.APIError, match="quota exceeded"), stream:
        list(stream)
    [row] = relay.gw.wait_usage(uid, 1)
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")
    assert relay.gw.balance(uid) == usd(CREDIT)


def test_an_error_event_after_text_is_a_cut_when_the_sdk_leaves_at_it(relay: Relay) -> None:
    name = relay.mock.record(paced(sse(chunk("Hello there")), sse(QUOTA), DONE, delay=0.3))
    uid, key = relay.gw.user(CREDIT)
    stream = relay.gw.client(key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"hi [[mock:replay={name}]]"}], stream=True
    )
    with pytest.raises(openai.APIError), stream:
        list(stream)
    [row] = relay.gw.wait_usage(uid, 1)
    assert (row["status"], row["usage_source"]) == ("upstream_cut", "counted")
    assert usd(row["cost"]) > 0


def test_a_client_gone_at_the_finish_chunk_is_billed_the_usage_that_follows(
    relay: Relay,
) -> None:
    # 497 of the 500 output tokens are reasoning the stream never shows: only the report that
    # comes after the finish chunk can bill them.
    recording = paced(
        sse(chunk("Hi!")), sse(chunk(finish="stop")), sse(chunk(usage=USAGE)), DONE, delay=0.5
    )
    text, row = call(relay, recording, stop_at_finish=True)
    assert text == "Hi!"
    assert (row["status"], row["usage_source"]) == ("ok", "upstream")
    assert usd(row["cost"]) == cost(9, 500)


def test_a_client_gone_before_the_finish_chunk_is_a_disconnect(relay: Relay) -> None:
    recording = paced(
        sse(chunk("Hi")), sse(chunk(" there")), sse(chunk(finish="stop")), DONE, delay=0.5
    )
    name = relay.mock.record(recording)
    uid, key = relay.gw.user(CREDIT)
    stream = relay.gw.client(key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"hi [[mock:replay={name}]]"}], stream=True
    )
    with stream:
        next(iter(stream))
    [row] = relay.gw.wait_usage(uid, 1)
    assert row["status"] == "client_disconnected"


def test_a_last_event_without_its_blank_line_reaches_the_client_whole(relay: Relay) -> None:
    usage_event = sse(chunk(usage=USAGE)).rstrip(b"\n")  # the upstream closes right after "}"
    name = relay.mock.record(
        Recording(headers=(SSE,), chunks=(sse(chunk("Hi!", finish="stop")), usage_event))
    )
    uid, key = relay.gw.user(CREDIT)
    raw = raw_chat(stream=True, stream_options={"include_usage": True})(
        relay.gw.client(key), f"hi [[mock:replay={name}]]"
    )
    assert raw.body.endswith(usage_event + b"\n\n")
    stream = relay.gw.client(key).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": f"hi [[mock:replay={name}]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [c.usage for c in stream if c.usage is not None]
    assert [u.completion_tokens for u in usages] == [500]  # the SDK dispatched the last event
    rows = relay.gw.wait_usage(uid, 2)
    assert {row["status"] for row in rows} == {"ok"}
