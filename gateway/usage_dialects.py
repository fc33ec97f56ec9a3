"""Every provider's usage shape -> one normalized token record (pure, no I/O).

``normalize(obj)`` takes a whole response body, a stream chunk or a stream event, finds every
usage-bearing object in it by its fields (no configuration, no provider name needed) and
returns a ``NormalizedUsage``, or None when nothing usage-like is there:

=====================  ======================================================================
where                  shape (fields read)
=====================  ======================================================================
``usage``              OpenAI chat/completions/embeddings (Azure, Mistral, Groq, Together,
                       Fireworks, OpenRouter, vLLM, Ollama /v1, llama.cpp /v1, Gemini and
                       Anthropic OpenAI-compatible), Responses API body, Anthropic Messages
                       body and ``message_delta``, DeepSeek's hit/miss counts
``response.usage``     Responses API stream events (``response.completed`` and siblings)
``message.usage``      Anthropic ``message_start``
``x_groq.usage``       Groq stream chunks
``usageMetadata``      Gemini native ``generateContent`` / ``streamGenerateContent``
``prompt_eval_count``  Ollama native ``/api/chat``, ``/api/generate``, ``/api/embed``
``timings``            llama.cpp server (``prompt_n``, ``cache_n``, ``predicted_n``), and its
                       native ``tokens_evaluated`` / ``tokens_predicted``
=====================  ======================================================================

Token classes (``NormalizedUsage``): ``prompt_tokens`` is every input token, with the cached,
cache-written and audio ones inside it (Anthropic's native ``input_tokens`` excludes cache
reads and writes, so they are added back); ``output_tokens`` is what the provider bills as
output, reasoning and audio inside it. A field is None when the provider did not report it:
never a silent 0. Subset classes that were not reported cost what their parent costs.

Streams: ``merge(previous, new)`` keeps the field-wise maximum. Usage in a stream is either
final (reported once) or cumulative (each report is the running total), never a per-chunk
delta, for every provider here; the maximum is then the final figure, in any order:

=================  =========================================================================
provider           streamed usage
=================  =========================================================================
OpenAI, Azure,     final: one chunk before ``[DONE]`` when ``stream_options.include_usage``
DeepSeek, Mistral, (Mistral, Together, Fireworks and OpenRouter send it unasked); the chunk
Together,          may still carry ``choices`` (BerriAI/litellm#36168). Responses API: final,
Fireworks,         in ``response.completed`` / ``.incomplete`` / ``.failed``. The same for
OpenRouter         the OpenAI-compatible endpoints of Anthropic, Gemini and Ollama.
Groq               final, in ``x_groq.usage`` of the last chunk (vercel/ai#1651), and again
                   in ``usage`` when include_usage is set (Portkey-AI/gateway#1338)
vLLM               cumulative on every chunk with ``continuous_usage_stats``, the last one
                   wins (vllm-project/vllm#6652); otherwise final
Anthropic          ``message_start`` carries input and cache counts and an initial
                   ``output_tokens``; ``message_delta`` counts are cumulative
                   (docs.anthropic.com/en/docs/build-with-claude/streaming); input may arrive
                   only at start
Gemini native      cumulative ``usageMetadata`` on chunks, the last is complete
                   (pydantic/pydantic-ai#1577, googleapis/python-genai#1204)
Ollama native      final, on the ``done: true`` object
llama.cpp          final ``usage`` and ``timings`` on the last chunk; ``timings`` also
                   cumulative per chunk with ``timings_per_token``
=================  =========================================================================

A provider that sent per-chunk deltas would need summing; none of these does. The readers
of each family of fields live in ``gateway.usage_shapes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Final

from gateway.usage_shapes import (
    Dialect,
    NormalizedUsage,
    clip,
    count,
    larger,
    read_counts,
    read_gemini,
    read_timings,
    read_usage,
)

__all__ = [
    "DIALECTS",
    "USAGE_KEYS",
    "Dialect",
    "NormalizedUsage",
    "merge",
    "normalize",
    "plausible_prompt",
    "with_prompt",
]

# A reported prompt below a quarter of our own count is not a tokenizer difference
# (cl100k vs. Llama/Gemini tokenizers differ by well under 2x on text): it is a provider that
# counted only the uncached suffix or nothing (ollama/ollama#5370, #3427). The slack covers
# chat-template overhead on tiny prompts; it matches the cases' max(10 %, 8 tokens) tolerance.
IMPLAUSIBLE_RATIO: Final = 4
SLACK_TOKENS: Final = 8

# Every key whose presence in an object lets ``normalize`` find usage there (``response``,
# ``message`` and ``x_groq`` hold theirs under ``usage``). An object holding none of them has
# no usage: a stream relay can skip parsing it (gateway.proxy.sse).
USAGE_KEYS: Final = (
    "usage",
    "usageMetadata",
    "timings",
    "prompt_eval_count",
    "eval_count",
    "tokens_evaluated",
    "tokens_predicted",
)

_DEFAULT: Final = Dialect()
DIALECTS: Final[Mapping[str, Dialect]] = MappingProxyType(
    {
        # A relay of Claude that renames input_tokens to prompt_tokens but keeps
        # cache_read_input_tokens / cache_creation_input_tokens beside it, disjoint.
        "anthropic": Dialect(cache_disjoint=True),
        # docs.x.ai consumption-and-rate-limits: reasoning is counted separately from
        # completion_tokens (vercel/ai#12425, Wei-Shaw/sub2api#5771).
        "xai": Dialect(reasoning_outside=True),
    }
)


def normalize(obj: object, *, dialect: str | None = None) -> NormalizedUsage | None:
    """The usage in ``obj`` (a body, a stream chunk or a stream event), or None.

    Follows: OpenAI API reference (chat ``usage``, Responses ``usage``, Realtime
    ``response.done``), docs.anthropic.com Messages ``usage`` and streaming, Google
    ``UsageMetadata`` (ai.google.dev/api/generate-content) and its OpenAI compatibility,
    api-docs.deepseek.com (context caching), openrouter.ai/docs/use-cases/usage-accounting,
    console.groq.com/docs (``x_groq``), docs.vllm.ai (``continuous_usage_stats``), Ollama
    docs/api.md, llama.cpp tools/server README (``timings``). Every usage-bearing object
    found in ``obj`` is read and they are merged (a relay may add its own ``usage`` beside
    ``x_groq.usage``). ``dialect`` names a row of ``DIALECTS`` (ValueError otherwise); None is
    right for every shape whose fields settle it.
    """
    if not isinstance(obj, dict):
        return None
    rules = _DEFAULT if dialect is None else _dialect(dialect)
    found: NormalizedUsage | None = None
    usage = obj.get("usage")
    if isinstance(usage, dict):
        found = read_usage(usage, rules)
    for holder in ("response", "message", "x_groq"):
        inner = obj.get(holder)
        if isinstance(inner, dict):
            nested = inner.get("usage")
            if isinstance(nested, dict):
                found = merge(found, read_usage(nested, rules))
    meta = obj.get("usageMetadata")
    if isinstance(meta, dict):
        found = merge(found, read_gemini(meta))
    if "prompt_eval_count" in obj or "eval_count" in obj:  # Ollama native
        prompt, output = count(obj.get("prompt_eval_count")), count(obj.get("eval_count"))
        found = merge(found, read_counts(prompt, output))
    if "tokens_evaluated" in obj or "tokens_predicted" in obj:  # llama.cpp /completion
        prompt, output = count(obj.get("tokens_evaluated")), count(obj.get("tokens_predicted"))
        found = merge(found, read_counts(prompt, output))
    timings = obj.get("timings")
    if isinstance(timings, dict):
        found = merge(found, read_timings(timings))
    return found


def merge(previous: NormalizedUsage | None, new: NormalizedUsage | None) -> NormalizedUsage | None:
    """Two usage reports of one call -> one: the field-wise maximum, None as unknown.

    Right for final reports (one report, or the same one twice) and for cumulative ones
    (vLLM continuous usage stats, docs.vllm.ai; Anthropic ``message_start`` then
    ``message_delta``, whose counts are cumulative and whose input may come only at start,
    docs.anthropic.com/en/docs/build-with-claude/streaming; Gemini's streamed
    ``usageMetadata``): commutative, associative and idempotent, so any order gives the
    final figures. Subsets are not re-clipped to parents that came from another report
    (that would make the result depend on order); pricing clips them.
    """
    if previous is None:
        return new
    if new is None or new == previous:
        return previous
    return NormalizedUsage(
        *(larger(getattr(previous, f.name), getattr(new, f.name)) for f in fields(NormalizedUsage))
    )


def plausible_prompt(reported: int | None, local_estimate: int) -> bool:
    """Whether a reported prompt count can be billed, against our local count of the prompt.

    Rule: missing is never plausible; for a non-empty prompt (estimate > 0), 0 is never
    plausible; otherwise plausible when ``reported * 4 >= local_estimate`` or it falls short
    by at most 8 tokens. Larger than the estimate is always plausible (images, tools and
    provider-side system prompts are counted upstream only). Motivated by ollama/ollama#5370
    (``prompt_tokens: 0`` on a cached prompt) and #3427 (``prompt_eval_count`` missing); the
    caller bills its local count when this is False and marks ``usage_source``.
    """
    if reported is None or reported < 0:
        return False
    if local_estimate <= 0:
        return True
    if reported == 0:
        return False
    return (
        reported * IMPLAUSIBLE_RATIO >= local_estimate or local_estimate - reported <= SLACK_TOKENS
    )


def with_prompt(usage: NormalizedUsage, prompt_tokens: int) -> NormalizedUsage:
    """``usage`` with its prompt replaced by a local count, subsets clipped to fit.

    For the caller that found the reported prompt missing or implausible
    (``plausible_prompt``, after ollama/ollama#5370) and bills its own count instead.
    """
    prompt = max(prompt_tokens, 0)
    cached = clip(usage.cached_tokens, prompt)
    writes = clip(usage.cache_write_tokens, prompt - (cached or 0))
    return NormalizedUsage(
        prompt_tokens=prompt,
        cached_tokens=cached,
        cache_write_tokens=writes,
        cache_write_1h_tokens=clip(usage.cache_write_1h_tokens, writes),
        prompt_audio_tokens=clip(usage.prompt_audio_tokens, prompt),
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        output_audio_tokens=usage.output_audio_tokens,
        upstream_cost_nanos=usage.upstream_cost_nanos,
        web_search_requests=usage.web_search_requests,
    )


def _dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown usage dialect {name!r}; known: {sorted(DIALECTS)}") from None
