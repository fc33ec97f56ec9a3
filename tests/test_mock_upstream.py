from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from gateway.mock.replay import Recording
from gateway.mock.runner import MockUpstreamThread, start
from tests.support.waiting import wait_until

PIECES = ["Hello", " from", " the", " mock", " model."]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread() as server:
        yield server


@pytest.fixture
def client(mock: MockUpstreamThread) -> Iterator[openai.OpenAI]:
    mock.clear()
    with openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw_post(mock: MockUpstreamThread, path: str, payload: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        mock.base_url + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer raw"},
    )
    with urllib.request.urlopen(request) as response:
        return response.read()


def data_lines(raw: bytes) -> list[str]:
    return [line[len("data: ") :] for line in raw.decode().split("\n") if line.startswith("data: ")]


def test_chat_non_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "be nice"}, *user("say hi please")]
    reply = client.chat.completions.create(model="mock-gpt", messages=messages)
    assert reply.object == "chat.completion"
    assert reply.model == "mock-gpt"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "Hello from the mock model."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 5)
    assert reply.usage.total_tokens == 10
    assert reply.usage.prompt_tokens_details.cached_tokens == 0
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0


def test_prompt_tokens_count_text_parts_and_skip_directives(client: openai.OpenAI) -> None:
    content = [
        {"type": "text", "text": "one two"},
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
        {"type": "text", "text": "three [[mock:chunks=2]]"},
    ]
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 2)
    assert reply.choices[0].message.content == " w0 w1"


def test_chat_stream_without_usage(client: openai.OpenAI, mock: MockUpstreamThread) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=user("hi"), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:]]
    assert content == PIECES
    assert [c.choices[0].finish_reason for c in chunks] == [None] * 5 + ["stop"]
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)

    lines = data_lines(
        raw_post(mock, "/chat/completions", {"messages": user("hi"), "stream": True})
    )
    assert lines[-1] == "[DONE]"
    assert all('"usage"' not in line and ", " not in line for line in lines[:-1])


def test_chat_stream_with_usage(client: openai.OpenAI, mock: MockUpstreamThread) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=user("a b c"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 5)
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "".join(PIECES)

    payload = {"messages": user("x"), "stream": True, "stream_options": {"include_usage": True}}
    lines = data_lines(raw_post(mock, "/chat/completions", payload))
    assert lines[-1] == "[DONE]"
    assert all('"usage":null' in line for line in lines[:-2])
    assert '"choices":[]' in lines[-2]
    assert '"total_tokens":6' in lines[-2]


def test_chunks_directive_gives_twenty_pieces(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=user("bench [[mock:chunks=20]]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == [f" w{i}" for i in range(20)]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="mock-gpt", prompt="once upon a time")
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "Hello from the mock model."
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 4

    chunks = list(
        client.completions.create(
            model="m", prompt=[1, 2, 3], stream=True, stream_options={"include_usage": True}
        )
    )
    assert [c.choices[0].text for c in chunks[:-1]] == PIECES
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3


def test_embeddings_base64_default_and_float(
    client: openai.OpenAI, mock: MockUpstreamThread
) -> None:
    default = client.embeddings.create(model="mock-embedding", input=["hello world", "bye"])
    assert mock.requests()[-1]["body"]["encoding_format"] == "base64"
    floats = client.embeddings.create(
        model="mock-embedding", input=["hello world", "bye"], encoding_format="float"
    )
    assert [d.index for d in default.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in default.data)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens == default.usage.total_tokens == 3

    tokens = client.embeddings.create(model="e", input=[[1, 2], [3]], encoding_format="float")
    assert len(tokens.data) == 2
    assert tokens.usage.prompt_tokens == 3
    single = client.embeddings.create(model="e", input=[5, 6, 7], encoding_format="float")
    assert len(single.data) == 1
    assert single.usage.prompt_tokens == 3


def test_embeddings_raw_base64_is_little_endian_float32(mock: MockUpstreamThread) -> None:
    raw = raw_post(mock, "/embeddings", {"model": "e", "input": "hi", "encoding_format": "base64"})
    encoded = json.loads(raw)["data"][0]["embedding"]
    plain = json.loads(raw_post(mock, "/embeddings", {"model": "e", "input": "hi"}))
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == plain["data"][0]["embedding"]


def test_responses_non_stream(client: openai.OpenAI) -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "a b c"}]},
        {"role": "assistant", "content": "d"},
    ]
    reply = client.responses.create(model="mock-gpt", input=items, instructions="be brief")
    assert reply.object == "response"
    assert reply.status == "completed"
    assert reply.output_text == "Hello from the mock model."
    assert reply.output[0].type == "message"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (6, 5)
    assert reply.usage.total_tokens == 11
    assert reply.usage.input_tokens_details.cached_tokens == 0
    assert reply.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_stream(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="m", input="hello there", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.output_text.done" in types
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == PIECES
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.output_text == "Hello from the mock model."
    assert final.usage is not None
    assert final.usage.input_tokens == 2

    # The higher-level helper accumulates state from output_item/content_part events.
    with client.responses.stream(model="m", input="x [[mock:chunks=3]]") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == " w0 w1 w2"


def test_status_directive_raises(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=user("[[mock:status=500]]"))
    assert info.value.status_code == 500
    assert info.value.body["type"] == "server_error"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="m", messages=user("hi"), extra_headers={"x-mock": "status=429"}
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=user("[[mock:bogus=1]]"))


def test_cut_after_breaks_stream_in_sdk(client: openai.OpenAI) -> None:
    received: list[str] = []

    def read(stream: Iterable[ChatCompletionChunk]) -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    stream = client.chat.completions.create(
        model="m", messages=user("hi [[mock:cut_after=2]]"), stream=True
    )
    with pytest.raises(openai.APIError):
        read(stream)
    assert received == ["", "Hello", " from"]

    with pytest.raises(openai.APIError):
        list(client.responses.create(model="m", input="[[mock:cut_after=1]]", stream=True))


async def read_into(lines: list[bytes], content: aiohttp.StreamReader) -> None:
    async for line in content:
        lines.append(line)


def test_cut_after_breaks_stream_in_aiohttp(mock: MockUpstreamThread) -> None:
    async def read() -> list[bytes]:
        lines: list[bytes] = []
        payload = {"model": "m", "stream": True, "messages": user("hi")}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                mock.base_url + "/chat/completions", json=payload, headers={"x-mock": "cut_after=3"}
            ) as response:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await read_into(lines, response.content)
        return lines

    events = [line for line in asyncio.run(read()) if line.startswith(b"data: ")]
    assert len(events) == 4  # role chunk + 3 content chunks, no [DONE]


def test_streams_cut_or_closed_early_log_no_traceback(
    client: openai.OpenAI, mock: MockUpstreamThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model="m", messages=user("[[mock:cut_after=1]]"), stream=True
            )
        )
    cut = mock.record(
        Recording(
            headers=(("Content-Type", "text/event-stream"),),
            chunks=(b'data: {"id": "c", "object": "chat.completion.chunk", "choices": []}\n\n',),
            cut=True,
        )
    )
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model="m", messages=user(f"[[mock:replay={cut}]]"), stream=True
            )
        )
    # A client leaving mid-stream (the gateway does when its caller leaves) is normal too.
    stream = client.chat.completions.create(
        model="m", messages=user("[[mock:chunks=50]] [[mock:chunk_delay=0.02]]"), stream=True
    )
    next(iter(stream))
    stream.close()
    wait_until(
        mock.requests,
        lambda log: "closed_after" in log[-1],
        wanted="the mock to notice the closed stream",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_no_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="m", messages=user("[[mock:no_usage=1]]"))
    assert reply.usage is None
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=user("[[mock:no_usage=1]]"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    response = client.responses.create(model="m", input="[[mock:no_usage=1]]")
    assert response.usage is None


def test_cached_and_reasoning(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="m", messages=user("a b c d [[mock:cached=3]] [[mock:reasoning=7]]")
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 3
    assert reply.usage.completion_tokens_details.reasoning_tokens == 7
    assert reply.usage.completion_tokens == 12  # reasoning is counted inside completion tokens
    capped = client.chat.completions.create(model="m", messages=user("a [[mock:cached=50]]"))
    assert capped.usage is not None
    assert capped.usage.prompt_tokens_details.cached_tokens == 1


def test_the_reply_is_cut_to_the_output_cap_like_a_provider(client: openai.OpenAI) -> None:
    words = user("a [[mock:chunks=50]]")
    chat = client.chat.completions.create(model="m", messages=words, max_completion_tokens=7)
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 7
    done = client.completions.create(model="m", prompt="a [[mock:chunks=50]]", max_tokens=3)
    assert done.choices[0].text == " w0 w1 w2"
    reply = client.responses.create(model="m", input="[[mock:chunks=50]]", max_output_tokens=16)
    assert reply.usage is not None
    assert reply.usage.output_tokens == 16


def test_stored_adds_prompt_tokens_the_body_does_not_carry(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="m", input="continue [[mock:stored=150000]]", previous_response_id="resp_1"
    )
    assert reply.usage is not None
    assert reply.usage.input_tokens == 150_001


def test_delay_is_slept_before_the_answer(client: openai.OpenAI, mock: MockUpstreamThread) -> None:
    # The mock writes the delay into the request's log entry only once the sleep is over, and
    # before the first byte of the answer: with the answer in hand, the entry must show it.
    client.chat.completions.create(
        model="m", messages=user("hi"), extra_headers={"x-mock": "delay=0.2"}
    )
    client.chat.completions.create(model="m", messages=user("hi [[mock:delay=0.01]]"))
    client.chat.completions.create(model="m", messages=user("hi"))
    assert [entry["delay"] for entry in mock.requests()] == [0.2, 0.01, 0.0]


def test_models(client: openai.OpenAI) -> None:
    assert "mock-gpt" in [m.id for m in client.models.list()]


def test_request_log(client: openai.OpenAI, mock: MockUpstreamThread) -> None:
    client.chat.completions.create(model="m", messages=user("logged"))
    [entry] = mock.requests()
    assert entry["method"] == "POST"
    assert entry["path"] == "/v1/chat/completions"
    assert entry["headers"]["authorization"] == "Bearer x"
    assert entry["body"] == {"model": "m", "messages": user("logged")}

    base = mock.base_url.removesuffix("/v1")
    with urllib.request.urlopen(base + "/_mock/requests") as response:
        assert json.loads(response.read()) == [entry]
    with urllib.request.urlopen(urllib.request.Request(base + "/_mock/requests", method="DELETE")):
        pass
    assert mock.requests() == []


def test_start_returns_runner_and_port() -> None:
    async def run() -> dict[str, Any]:
        runner, port = await start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/v1/models") as response:
                    return await response.json()
        finally:
            await runner.cleanup()

    assert asyncio.run(run())["object"] == "list"
