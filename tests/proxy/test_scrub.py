"""Scrubbing the provider key out of upstream bytes: every echo form, split anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.proxy.scrub import Secret, StreamScrub, secret_for
from tests.support.keyed import PROVIDER_KEY, masked

SECRET = secret_for(PROVIDER_KEY)
assert SECRET is not None


def scrubbed(text: str, secret: Secret = SECRET) -> str:
    return secret.scrub(text.encode()).decode()


@pytest.mark.parametrize(
    ("echo", "why"),
    [
        (PROVIDER_KEY, "whole"),
        (masked(PROVIDER_KEY), "OpenAI's 401: first 8, a star per hidden character, last 4"),
        ("sk-proj-" + "*" * 20 + PROVIDER_KEY[-4:], "a mask of another length"),
        ("sk-..." + PROVIDER_KEY[-4:], "dots"),
        ("sk-proj-Qm7v…" + PROVIDER_KEY[-4:], "an ellipsis"),
        ("sk-proj\\u2026" + PROVIDER_KEY[-4:], "an ellipsis, JSON-escaped"),
        ("••••" + PROVIDER_KEY[-6:], "bullets and the last 6"),
    ],
)
def test_every_echo_form_is_redacted(echo: str, why: str) -> None:
    text = f'{{"message": "Incorrect API key provided: {echo}. You can find your API key"}}'
    assert scrubbed(text) == (
        '{"message": "Incorrect API key provided: [redacted]. You can find your API key"}'
    ), why


def test_openai_masking_of_an_older_key_is_redacted() -> None:
    # The form public reports of OpenAI's 401 show for 51-character "sk-" keys.
    key = "sk-zhj0sAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcCMuq"
    secret = secret_for(key)
    assert secret is not None
    shown = "sk-zhj0s" + "*" * 39 + "CMuq"
    assert shown == masked(key)
    assert scrubbed(f"provided: {shown}.", secret) == "provided: [redacted]."


def test_a_key_a_json_encoder_escaped_is_redacted() -> None:
    key = "AKIAab/cd+ef/ghIJ/klm"
    secret = secret_for(key)
    assert secret is not None
    assert scrubbed('"' + key.replace("/", "\\/") + '"', secret) == '"[redacted]"'
    assert scrubbed("x " + key + " y", secret) == "x [redacted] y"


def test_text_that_shows_no_part_of_the_key_is_returned_as_it_is() -> None:
    data = b'data: {"choices": [{"delta": {"content": "sk-proj-**** is how keys look"}}]}\n\n'
    assert SECRET.scrub(data) is data
    # The last 4 characters alone, without a mask before them, are not an echo.
    near = f"code {PROVIDER_KEY[-4:]} here".encode()
    assert SECRET.scrub(near) == near


def test_placeholder_keys_are_not_scrubbed() -> None:
    # vLLM and llama.cpp servers are often given "EMPTY" or "x": words, not secrets.
    assert secret_for("EMPTY") is None
    assert secret_for(None) is None


TEXT = st.text(alphabet="ab *.-_:\n\"'" + PROVIDER_KEY[-6:] + PROVIDER_KEY[:8], max_size=60)
PIECES = st.lists(
    st.one_of(TEXT, st.sampled_from([PROVIDER_KEY, masked(PROVIDER_KEY)])), max_size=6
)


@given(pieces=PIECES, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_a_stream_split_anywhere_is_scrubbed_as_the_whole_would_be(
    pieces: list[str], cuts: list[int]
) -> None:
    data = "".join(pieces).encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    reads = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    stream = StreamScrub(SECRET)
    out = b"".join(stream.feed(read) for read in reads) + stream.flush()
    assert out == SECRET.scrub(data)
    assert PROVIDER_KEY.encode() not in out
    assert masked(PROVIDER_KEY).encode() not in out


def test_a_read_that_ends_an_event_is_passed_on_whole() -> None:
    stream = StreamScrub(SECRET)
    event = b'data: {"choices": []}\n\n'
    assert stream.feed(event) is event
    # A read that ends inside a word may be the start of the key: it waits for the next.
    assert stream.feed(b'data: {"x": "sk-pr') == b'data: {"x": "'
    assert stream.feed(b'oj-ok"}\n\n') == b'sk-proj-ok"}\n\n'
    assert stream.flush() == b""
