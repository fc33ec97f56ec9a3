"""POST /v1/messages/count_tokens: Anthropic's free prompt count, relayed, never metered.

The caller is authenticated as for /v1/messages (``x-api-key`` or ``Authorization: Bearer``),
the model resolved and checked against the key's and owner's model lists, and the request sent
to the model's first deployment with the model renamed and ``anthropic-version`` /
``anthropic-beta`` passed on. Anthropic does not charge for it, so nothing is reserved or
billed and no usage record is written; the answer (``{"input_tokens": N}``) or the upstream's
refusal comes back as sent, errors in Anthropic's shape.
"""

from __future__ import annotations

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from gateway.endpoints import ENDPOINTS
from gateway.errors import GatewayError, UpstreamError
from gateway.proxy.anthropic_errors import reshape
from gateway.proxy.governance import check_caller
from gateway.proxy.refusals import passed_on
from gateway.proxy.request import caller_key, parse_object, passed_headers, read_body
from gateway.proxy.responses import send_body, send_error
from gateway.proxy.scrub import scrub, secret_for
from gateway.request_ids import new_request_id
from gateway.services import Services

PATH = "messages/count_tokens"


class CountTokens:
    """The ASGI app of /v1/messages/count_tokens (mounted by app.py)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.endpoint = ENDPOINTS["messages"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services, endpoint = self.services, self.endpoint
        request_id = new_request_id()
        types = endpoint.error_types
        headers = dict(scope["headers"])
        try:
            key, owner = await services.auth.caller(caller_key(headers, endpoint))
            body = await read_body(receive, headers, services.settings.max_body_bytes)
            payload = parse_object(body)
            model = services.catalog.resolve(payload.get("model"), endpoint.path)
            check_caller(key, owner, model.name)
            deployment = model.deployments[0]
            payload["model"] = deployment.upstream_model
            response = await services.upstreams.post(
                deployment.provider,
                PATH,
                orjson.dumps(payload),
                request_id=request_id,
                accept="application/json",
                extra=passed_headers(headers, endpoint),
            )
            async with response:
                try:
                    raw = await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise UpstreamError("upstream broke off its answer") from exc
                status = response.status
                content_type = response.headers.get("Content-Type", "application/json")
        except GatewayError as exc:
            await send_error(send, exc, request_id, types)
            return
        provider = deployment.provider
        raw = scrub(secret_for(provider.api_key), raw)
        if status >= 400:
            status, raw, content_type = passed_on(provider, status, raw, content_type)
            if types is not None:
                raw, content_type = reshape(types, status, raw), "application/json"
        await send_body(send, status, raw, content_type, request_id)
