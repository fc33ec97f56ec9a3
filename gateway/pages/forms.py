"""Reading the pages' POST forms (application/x-www-form-urlencoded, the browser's default).

Parsed with the standard library: starlette's ``request.form()`` would need python-multipart,
and the pages never upload files. A field sent twice keeps its last value.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from gateway.errors import BadRequest, PayloadTooLarge

MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (stripped of surrounding whitespace). Raises BadRequest for another
    content type or a body that is not UTF-8, PayloadTooLarge above 64 KiB."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise BadRequest("a form must be sent as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge("this form is too large")
    try:
        text = bytes(body).decode()
    except UnicodeDecodeError as exc:
        raise BadRequest("the form is not UTF-8") from exc
    return {k: v.strip() for k, v in parse_qsl(text, keep_blank_values=True)}
