"""GET /metrics: the app's collectors in the Prometheus text format (OpenMetrics on request).

Unauthenticated, like most exporters: label values are skill, provider and tool names from the
registry and config, never secrets or client input. Operators who do not want those names
public must not expose the gateway's port beyond their network (docs/metrics.md); there is no
setting to require a key on it yet.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from gateway.metrics import GatewayMetrics

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    collected: GatewayMetrics = request.app.state.metrics
    # Prometheus asks for OpenMetrics in Accept; curl and older scrapers get text 0.0.4.
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(collected.registry), media_type=content_type)
