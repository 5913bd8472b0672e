"""The JSON decoder of the CDS routes' request bodies: msgspec instead of the standard library's ``json``.

FastAPI reads a route's JSON body with ``Request.json()`` (``json.loads``) and then validates it with the
route's pydantic model. For a patient-view body of 54 Observations the decode is most of the
framework's own cost (issue 18: about 105 us with ``json.loads``, about 50 us with msgspec, while the
pydantic validation of the envelope is about 5 us), so ``CdsRoute`` hands FastAPI a request whose
``json()`` decodes with msgspec; the validation (and its 400 OperationOutcome) stays the request models'.

A body msgspec refuses is reported as FastAPI reports broken JSON (``json.JSONDecodeError``, a 400
"the body is not valid JSON"). msgspec reads UTF-8 only (RFC 8259 section 8.1: JSON exchanged between
systems is UTF-8); a UTF-16 body is a 400, and so are ``NaN`` and ``Infinity``, which are not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

_DECODER = msgspec.json.Decoder()
UTF8_BOM = b"\xef\xbb\xbf"  # RFC 8259 section 8.1: a parser may ignore it (json.loads did)


class MsgspecJsonRequest(Request):
    """A request whose JSON body is decoded by msgspec (into the same dicts, lists, strings and numbers)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = _DECODER.decode(body[3:] if body.startswith(UTF8_BOM) else body)
            except msgspec.DecodeError as error:  # what FastAPI turns into its json_invalid 400
                raise json.JSONDecodeError(str(error), "", 0) from None
        return self._json


class CdsRoute(APIRoute):
    """A FastAPI route whose JSON body is read by ``MsgspecJsonRequest``; everything else is FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(MsgspecJsonRequest(request.scope, request.receive))

        return route_handler
