"""models.yaml: load, validate, price lookup. Providers are data, never ``if provider == ...``.

A file is parsed to YAML nodes first so that every error names the file, line and field at
fault. A catalog is immutable; a reload builds a new one and swaps it in only when it is valid,
so a bad file keeps the old prices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from gateway import deployments, model_prices, provider_keys
from gateway.deployments import Deployment
from gateway.endpoints import ENDPOINTS
from gateway.errors import BadRequest, NotFound
from gateway.inputs import ImageRule
from gateway.pricing import Price
from gateway.provider_apis import APIS, ProviderApi
from gateway.usage_dialects import DIALECTS

KINDS = ("chat", "embedding")
# Token counts in models.yaml: far above any model, low enough that a typo is caught.
MOST_TOKENS = 100_000_000


class CatalogError(ValueError):
    """An invalid models file; the message names file, line and field."""


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    # A row of gateway.usage_dialects.DIALECTS; None reads usage by its fields alone.
    dialect: str | None = None
    # Whether the upstream accepts stream_options, which the gateway injects to be told a
    # stream's usage (gateway.proxy.refusals); without it streams are billed by counting.
    stream_options: bool = True
    # A key of APIS: the endpoints the provider serves and how it takes the key.
    api: str = "openai"

    @property
    def auth(self) -> ProviderApi:
        return APIS[self.api]


@dataclass(frozen=True)
class Model:
    name: str
    # The first deployment's (the highest priority): /v1/models' owner, the price book's
    # provider, the tokenizer's choice. Which deployment serves a call is gateway.routing's.
    provider: Provider
    upstream_model: str
    price: Price
    kind: str = "chat"
    max_output_tokens: int = 4096
    encoding: str | None = None
    # Bounds on inputs the request body does not carry (gateway.inputs): the most input
    # tokens the model accepts, and the most tokens one image counts for.
    context_window: int | None = None
    image_tokens: ImageRule | None = None
    # Larger windows a request opens with an ``anthropic-beta`` header (Claude Sonnet 4 and
    # 4.5: ``context-1m-2025-08-07`` for 1M tokens; without it their window is 200k), as
    # (beta name, tokens) pairs.
    beta_context_windows: tuple[tuple[str, int], ...] = ()
    # The model bills reasoning it does not stream (OpenAI's o-series and gpt-5): a stream
    # cannot grow its hold from what it shows, so it holds its whole cap.
    hidden_reasoning: bool = False
    # Highest priority first; () stands for the one deployment (provider, upstream_model).
    deployments: tuple[Deployment[Provider], ...] = ()

    def __post_init__(self) -> None:
        if not self.deployments:
            one = (Deployment(self.provider, self.upstream_model),)
            object.__setattr__(self, "deployments", one)

    def with_betas(self, header: bytes | None) -> Model:
        """This model as a request with ``anthropic-beta: header`` (comma-separated names)
        sees it: with the largest context window one of the betas opens, else unchanged."""
        if header is None or not self.beta_context_windows:
            return self
        named = {b.strip() for b in header.decode("latin-1").split(",")}
        opened = [tokens for beta, tokens in self.beta_context_windows if beta in named]
        if not opened:
            return self
        return replace(self, context_window=max(opened))


@dataclass(frozen=True)
class Catalog:
    currency: str
    providers: Mapping[str, Provider]
    models: Mapping[str, Model]
    digest: str = ""
    source: str = ""

    def resolve(self, name: object, endpoint: str) -> Model:
        """The model ``name`` names, if its kind may serve the endpoint at /v1/``endpoint``."""
        if not isinstance(name, str) or not name:
            raise BadRequest(
                "you must provide a model parameter", param="model", code="missing_model"
            )
        model = self.models.get(name)
        if model is None:
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        served = ENDPOINTS[endpoint]
        wanted = served.model_kind
        if model.provider.api != served.api:
            raise BadRequest(
                f"model `{name}` is served by the {model.provider.api} API and cannot serve "
                f"/v1/{endpoint}",
                param="model",
                code="wrong_api",
            )
        if model.kind != wanted:
            raise BadRequest(
                f"model `{name}` is {'an' if model.kind[0] in 'aeiou' else 'a'} {model.kind} "
                f"model and cannot serve /v1/{endpoint}",
                param="model",
                code="wrong_model_kind",
            )
        provider_keys.require(name, model)
        return model


class _Located:
    """Maps a path of keys to the line where it was written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[tuple[str, ...], int] = {}
        self._scalars = yaml.constructor.SafeConstructor()

    def fail(self, where: tuple[str, ...], message: str) -> CatalogError:
        probe = where
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        dotted = ".".join(where) or "(top level)"
        return CatalogError(f"{self.path}:{line}: {dotted}: {message}")

    def to_python(self, node: yaml.Node, where: tuple[str, ...] = ()) -> Any:
        self.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in out:
                    self.lines[(*where, key)] = key_node.start_mark.line + 1
                    raise self.fail((*where, key), "duplicate key")
                out[key] = self.to_python(value_node, (*where, key))
                self.lines[(*where, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.to_python(v, (*where, str(i))) for i, v in enumerate(node.value)]
        # Scalars keep YAML's own typing (an unquoted 2.50 is a float, and is refused later).
        return self._scalars.construct_object(node)


def parse(text: str, *, source: str, env: Mapping[str, str]) -> Catalog:
    loc = _Located(source)
    try:
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise CatalogError(f"{source}:{line}: not valid YAML: {exc}") from exc
    if root_node is None:
        raise CatalogError(f"{source}:1: the file is empty")
    root = loc.to_python(root_node)
    if not isinstance(root, dict):
        raise loc.fail((), "the top level must be a mapping with providers and models")
    unknown = set(root) - {"currency", "providers", "models"}
    if unknown:
        key = sorted(unknown)[0]
        raise loc.fail((key,), "unknown top-level field")
    currency = root.get("currency", "usd")
    if currency != "usd":
        raise loc.fail(("currency",), "only usd is supported")
    providers = _providers(root.get("providers"), loc, env)
    models = _models(root.get("models"), providers, loc)
    return Catalog(
        currency=currency,
        providers=providers,
        models=models,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        source=source,
    )


def load(path: Path, env: Mapping[str, str]) -> Catalog:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read models file: {exc.strerror}") from exc
    return parse(text, source=str(path), env=env)


def _providers(raw: object, loc: _Located, env: Mapping[str, str]) -> dict[str, Provider]:
    if not isinstance(raw, dict) or not raw:
        raise loc.fail(("providers",), "must be a non-empty mapping of provider name -> settings")
    out: dict[str, Provider] = {}
    for name, spec in raw.items():
        where = ("providers", name)
        if not isinstance(spec, dict):
            raise loc.fail(where, "must be a mapping with base_url")
        unknown = set(spec) - {"base_url", "api_key_env", "dialect", "stream_options", "api"}
        if unknown:
            raise loc.fail((*where, sorted(unknown)[0]), "unknown field")
        base_url = spec.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise loc.fail((*where, "base_url"), "must be an http(s) URL")
        key_env = spec.get("api_key_env")
        if key_env is not None and (not isinstance(key_env, str) or not key_env):
            raise loc.fail((*where, "api_key_env"), "must be the name of an environment variable")
        dialect = spec.get("dialect")
        if dialect is not None and (not isinstance(dialect, str) or dialect not in DIALECTS):
            known = ", ".join(sorted(DIALECTS))
            raise loc.fail((*where, "dialect"), f"unknown usage dialect; known: {known}")
        stream_options = spec.get("stream_options", True)
        if not isinstance(stream_options, bool):
            raise loc.fail((*where, "stream_options"), "must be true or false")
        api = spec.get("api", "openai")
        if api not in APIS:
            raise loc.fail((*where, "api"), f"must be one of {', '.join(APIS)}")
        out[name] = Provider(
            name=name,
            api=api,
            base_url=base_url.rstrip("/"),
            api_key_env=key_env,
            api_key=env.get(key_env) if key_env else None,
            dialect=dialect,
            stream_options=stream_options,
        )
    return out


def _models(raw: object, providers: dict[str, Provider], loc: _Located) -> dict[str, Model]:
    if not isinstance(raw, dict) or not raw:
        raise loc.fail(("models",), "must be a non-empty mapping of model name -> settings")
    out: dict[str, Model] = {}
    for name, spec in raw.items():
        where = ("models", name)
        if not isinstance(spec, dict):
            raise loc.fail(where, "must be a mapping with provider and price")
        unknown = set(spec) - {
            "provider",
            "upstream_model",
            "deployments",
            "price",
            "max_output_tokens",
            "kind",
            "encoding",
            "context_window",
            "image_tokens",
            "hidden_reasoning",
            "beta_context_windows",
        }
        if unknown:
            raise loc.fail((*where, sorted(unknown)[0]), "unknown field")
        served_by = deployments.read(spec, name, where, providers, loc.fail)
        if len({d.provider.api for d in served_by}) > 1:
            # A fallback must take the same request: one API for every deployment.
            raise loc.fail((*where, "deployments"), "every deployment must use the same api")
        kind = spec.get("kind", "embedding" if "embedding" in name else "chat")
        if kind not in KINDS:
            raise loc.fail((*where, "kind"), f"must be one of {', '.join(KINDS)}")
        cap = spec.get("max_output_tokens", 4096 if kind == "chat" else 0)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0 or cap > 10_000_000:
            raise loc.fail((*where, "max_output_tokens"), "must be a whole number of tokens")
        if kind == "chat" and cap == 0:
            raise loc.fail((*where, "max_output_tokens"), "a chat model needs an output cap")
        hidden = spec.get("hidden_reasoning", False)
        if not isinstance(hidden, bool):
            raise loc.fail((*where, "hidden_reasoning"), "must be true or false")
        encoding = spec.get("encoding")
        if encoding is not None and not isinstance(encoding, str):
            raise loc.fail((*where, "encoding"), "must be a tiktoken encoding name")
        out[name] = Model(
            name=name,
            provider=served_by[0].provider,
            upstream_model=served_by[0].upstream_model,
            price=model_prices.price(spec.get("price"), (*where, "price"), kind, loc.fail),
            kind=kind,
            max_output_tokens=cap,
            encoding=encoding,
            context_window=_tokens(spec.get("context_window"), (*where, "context_window"), loc),
            image_tokens=_image_rule(spec.get("image_tokens"), (*where, "image_tokens"), loc),
            hidden_reasoning=hidden,
            beta_context_windows=_beta_windows(
                spec.get("beta_context_windows"), (*where, "beta_context_windows"), loc
            ),
            deployments=served_by,
        )
    return out


def _beta_windows(
    raw: object, where: tuple[str, ...], loc: _Located
) -> tuple[tuple[str, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k for k in raw):
        raise loc.fail(where, "must be a mapping like {context-1m-2025-08-07: 1000000}")
    return tuple((beta, _count(n, (*where, beta), loc)) for beta, n in raw.items())


def _tokens(raw: object, where: tuple[str, ...], loc: _Located) -> int | None:
    return None if raw is None else _count(raw, where, loc)


def _count(raw: object, where: tuple[str, ...], loc: _Located, least: int = 1) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not least <= raw <= MOST_TOKENS:
        raise loc.fail(where, f"must be a whole number of tokens from {least} to {MOST_TOKENS}")
    return raw


def _image_rule(raw: object, where: tuple[str, ...], loc: _Located) -> ImageRule | None:
    """``image_tokens: 1445`` (the most one image counts for) or ``{base: 85, tile: 170}``
    (OpenAI's tile formula)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        return ImageRule(_count(raw, where, loc))
    unknown = set(raw) - {"base", "tile"}
    if unknown:
        raise loc.fail((*where, sorted(unknown)[0]), "unknown field (base and tile are known)")
    if "base" not in raw or "tile" not in raw:
        raise loc.fail(where, "the tile formula needs both base and tile")
    return ImageRule(
        _count(raw["base"], (*where, "base"), loc), _count(raw["tile"], (*where, "tile"), loc, 0)
    )
