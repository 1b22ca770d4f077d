"""Admin API: publish skills (zip, tar.gz or SKILL.md text), read the registry. Admin key only."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from gateway.api.responses import json_response
from gateway.errors import GatewayError
from gateway.skill_views import publish_result_view, skill_detail_view, skill_summary_view
from gateway.state.keys import ApiKey
from gateway.state.notify import RegistrySync
from skills_registry.manifest import Problem, SkillInvalid
from skills_registry.publish import publish_skill
from skills_registry.store import SkillStore, VersionConflict

__all__ = ["authenticate_admin", "read_body_capped", "router", "upload_filename"]

log = logging.getLogger("skillwarden.admin")
router = APIRouter(prefix="/admin")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_TYPES = {"application/zip", "application/x-zip-compressed"}
_GZIP_TYPES = {
    "application/gzip",
    "application/x-gzip",
    "application/x-tar+gzip",
    "application/x-tgz",
}
_REFUSED_TYPES = {"multipart/form-data", "application/x-www-form-urlencoded", "application/json"}


def api_key_from_headers(request: Request) -> str | None:
    """x-api-key, else Authorization: Bearer <key>."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate_admin(request: Request) -> ApiKey:
    """401 without a valid key, 403 for a valid key that is not an admin key."""
    plaintext = api_key_from_headers(request)
    if plaintext is None:
        raise GatewayError("unauthenticated", 401, "an admin API key is required (x-api-key)")
    key = await request.app.state.key_store.verify(plaintext)
    if key is None:
        raise GatewayError("unauthenticated", 401, "invalid API key")
    if key.kind != "admin":
        raise GatewayError("forbidden", 403, "the admin API needs an admin key, not an agent key")
    return key  # type: ignore[no-any-return]


async def read_body_capped(request: Request, cap: int) -> bytes:
    """Read the body, refusing with 413 as soon as it exceeds cap (declared or streamed)."""
    too_large = GatewayError("payload_too_large", 413, f"request body exceeds {cap} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise GatewayError("invalid_request", 400, "invalid Content-Length header")
        if int(declared) > cap:
            raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:  # chunked uploads have no Content-Length to check up front
            raise too_large
    return bytes(body)


def upload_filename(content_type: str, body: bytes) -> str:
    """Which kind of upload this is, as the filename hint publish_skill understands."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _REFUSED_TYPES:
        raise GatewayError(
            "unsupported_media_type",
            415,
            f"send the zip, tar.gz or SKILL.md text as the raw request body, not {media}",
        )
    if not body:
        raise _invalid_body("empty", "the request body is empty")
    if body.startswith(_ZIP_MAGIC):
        return "skill.zip"
    if body.startswith(_GZIP_MAGIC):
        return "skill.tar.gz"
    if media in _ZIP_TYPES or media in _GZIP_TYPES:
        raise _invalid_body(media, "the body does not start with the archive's magic bytes")
    return "SKILL.md"


def _invalid_body(value: str, rule: str) -> GatewayError:
    return GatewayError(
        "invalid_request", 422, f"invalid upload: {rule}", problems=[Problem("body", rule, value)]
    )


@router.post("/skills")
async def publish(request: Request) -> Response:
    key = await authenticate_admin(request)
    cap = request.app.state.settings.admin.max_upload_bytes
    body = await read_body_capped(request, cap)
    filename = upload_filename(request.headers.get("content-type", ""), body)
    store: SkillStore = request.app.state.skill_store
    try:
        result = await publish_skill(store, body, publisher=key.consumer, filename=filename)
    except SkillInvalid as exc:
        log.warning(
            "publish rejected: publisher=%s upload=%s bytes=%d problems=%d",
            key.consumer, filename, len(body), len(exc.problems),
        )  # fmt: skip
        raise GatewayError(
            "skill_invalid", 422, f"skill rejected: {len(exc.problems)} problem(s)",
            problems=exc.problems,
        ) from None  # fmt: skip
    except VersionConflict as exc:
        log.warning("publish conflict: publisher=%s %s", key.consumer, exc)
        raise GatewayError("conflict", 409, str(exc)) from None
    log.info(
        "publish %s: publisher=%s skill=%s digest=%s added_tools=%s",
        result.status, key.consumer, result.version.ref, result.version.digest,
        list(result.added_tools),
    )  # fmt: skip
    request.app.state.skill_count = None  # /healthz recounts
    runtime = getattr(request.app.state, "runtime", None)
    registry: RegistrySync | None = getattr(runtime, "registry", None)
    if result.status == "published" and registry is not None:
        # This replica reloads now; the others on the notice (or their periodic reload).
        await registry.changed(result.version.name, result.version.version)
    status = 201 if result.status == "published" else 200
    return json_response(publish_result_view(result), status)


@router.get("/skills")
async def list_skills(request: Request) -> Response:
    await authenticate_admin(request)
    store: SkillStore = request.app.state.skill_store
    latest = await store.list_latest()
    return json_response({"skills": [skill_summary_view(v) for v in latest]})


@router.get("/skills/{ref}")
async def show_skill(request: Request, ref: str) -> Response:
    await authenticate_admin(request)
    name, _, version = ref.partition("@")
    store: SkillStore = request.app.state.skill_store
    selected = await store.get_version(name, version or None)
    if selected is None:
        raise GatewayError("not_found", 404, f"no skill {ref!r} in the registry")
    versions = await store.list_versions(name)
    return json_response(skill_detail_view(selected, versions))
