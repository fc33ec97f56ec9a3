"""What relaying a stream costs the gateway per read, against the floor of any event relay.

In-process, no sockets: a 200-chunk chat stream and a 200-delta Responses stream (as OpenAI
sends them, usage in the last chunk or terminal event) are fed to ``StreamMeter`` in reads of
one event and of 4 KiB. The floor, measured in the same run, is what any relay that forwards
whole events must do: find the last blank line of each read and keep the rest for the next.
The meter's figure is reported as a ratio to it, with how many events it parsed (JSON) per
stream: only those that can carry usage, an error or the end may be (issue 11: nothing may
re-parse events that cannot carry usage). Nothing here is a test: it prints a markdown table.

    python bench/sse_meter.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import orjson

from gateway.endpoints import CHAT_USAGE, RESPONSE_USAGE, UsageShape
from gateway.proxy import sse
from gateway.proxy.sse import StreamMeter

CHUNKS = 200


def chat_stream() -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [
        {
            **head,
            "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "finish_reason": None}],
        }
        for i in range(CHUNKS)
    ]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    events.append({**head, "choices": [], "usage": usage})
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def responses_stream() -> bytes:
    def event(kind: str, n: int, **fields: object) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": n, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    out = [event("response.created", 0, response={"id": "resp_1", "status": "in_progress"})]
    for i in range(CHUNKS):
        out.append(
            event(
                "response.output_text.delta",
                i + 1,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                delta=f" word{i}",
            )
        )
    usage = {"input_tokens": 12, "output_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    final = {"id": "resp_1", "status": "completed", "usage": usage}
    out.append(event("response.completed", CHUNKS + 1, response=final))
    return b"".join(out)


def reads(stream: bytes, size: int | None) -> list[bytes]:
    if size is None:  # one read per event, as a streaming upstream usually delivers them
        parts = stream.split(b"\n\n")
        return [p + b"\n\n" for p in parts[:-1]]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def floor(pieces: list[bytes], shape: UsageShape) -> None:
    tail = b""
    for data in pieces:
        buf = tail + data if tail else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            tail = buf
            continue
        tail = buf[end + 2 :]


def meter(pieces: list[bytes], shape: UsageShape) -> None:
    m = StreamMeter(shape, hide_usage_chunk=False)
    for data in pieces:
        m.feed(data)
    m.close()


def parse_all(pieces: list[bytes], shape: UsageShape) -> None:
    """A relay that parses every event (what the meter must not do), for scale."""
    tail = b""
    for data in pieces:
        buf = tail + data if tail else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            tail = buf
            continue
        tail = buf[end + 2 :]
        for event in buf[:end].split(b"\n\n"):
            for line in event.split(b"\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    orjson.loads(line[6:])


def timed(
    fn: Callable[[list[bytes], UsageShape], None],
    pieces: list[bytes],
    shape: UsageShape,
    rounds: int,
) -> float:
    """Median microseconds per read over ``rounds`` runs of the whole stream."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(pieces, shape)
        samples.append((time.perf_counter() - start) / len(pieces) * 1e6)
    return statistics.median(samples)


def parses(pieces: list[bytes], shape: UsageShape) -> int:
    """Events the meter parsed as JSON over one stream (counted at its one loader)."""
    count = 0
    original = sse._load

    def counting(data: bytes) -> object:
        nonlocal count
        count += 1
        return original(data)

    sse._load = counting
    try:
        meter(pieces, shape)
    finally:
        sse._load = original
    return count


def cases() -> Iterator[tuple[str, bytes, UsageShape, int | None]]:
    for name, stream, shape in (
        ("chat", chat_stream(), CHAT_USAGE),
        ("responses", responses_stream(), RESPONSE_USAGE),
    ):
        yield name, stream, shape, None
        yield name, stream, shape, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(
        "| stream | reads | floor µs/read | meter µs/read | meter / floor | parse-all µs/read "
        "| events parsed by the meter |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, stream, shape, size in cases():
        pieces = reads(stream, size)
        events = stream.count(b"\n\n")
        base = timed(floor, pieces, shape, args.rounds)
        ours = timed(meter, pieces, shape, args.rounds)
        full = timed(parse_all, pieces, shape, args.rounds)
        label = "one event" if size is None else f"{size} B"
        print(
            f"| {name} ({events} events) | {label} ({len(pieces)}) | {base:.2f} | {ours:.2f} "
            f"| {ours / base:.1f}x | {full:.2f} | {parses(pieces, shape)} |"
        )


if __name__ == "__main__":
    main()
