"""orjson responses for the gateway's own endpoints (FastAPI's ORJSONResponse is deprecated)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError, admin_error_body

__all__ = ["admin_error_response", "json_response"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def admin_error_response(error: GatewayError) -> Response:
    return json_response(admin_error_body(error), error.status, error.headers or None)
