"""The admin API and health endpoints, served by create_app(settings) under uvicorn."""

from __future__ import annotations

import io
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.e2e.conftest import StartGateway, create_key, embedded_settings

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[2] / "sample_skills"
SKILL_MD = """---
name: hello-world
description: Says hello. Use when the user asks for a greeting.
allowed-tools: Read Bash(echo:*)
---
Say hello.
"""


@pytest.fixture
def gateway(start_gateway: StartGateway, gateway_settings: Settings) -> Iterator[dict[str, str]]:
    admin = create_key(gateway_settings, "admin", "alice")
    agent = create_key(gateway_settings, "agent", "bot")
    url = start_gateway(gateway_settings)
    yield {"url": url, "admin": admin, "agent": agent}


def client(gateway: dict[str, str], key: str | None = "admin") -> httpx.Client:
    headers = {"x-api-key": gateway[key]} if key else {}
    return httpx.Client(base_url=gateway["url"], headers=headers, timeout=20)


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buf.getvalue()


def tar_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, f"{folder.name}/{path.relative_to(folder)}")
    return buf.getvalue()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "problems"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]


def test_healthz_and_head_root(gateway: dict[str, str]) -> None:
    with client(gateway, None) as c:
        health = c.get("/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["version"] and body["skills"] == 4  # the samples
        head = c.head("/")
        assert head.status_code == 200 and head.content == b""
        assert c.head("/healthz").status_code == 200


def test_admin_needs_an_admin_key(gateway: dict[str, str]) -> None:
    with client(gateway, None) as c:
        r = c.get("/admin/skills")
        assert r.status_code == 401 and error_of(r)["code"] == "unauthenticated"
        r = c.get("/admin/skills", headers={"x-api-key": "sk-sw-wrong"})
        assert r.status_code == 401
        r = c.get("/admin/skills", headers={"authorization": f"Bearer {gateway['agent']}"})
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
        r = c.get("/admin/skills", headers={"authorization": f"Bearer {gateway['admin']}"})
        assert r.status_code == 200


def test_list_and_show_samples(gateway: dict[str, str]) -> None:
    with client(gateway) as c:
        names = [s["name"] for s in c.get("/admin/skills").json()["skills"]]
        assert names == ["code-review", "data-analysis", "issue-triage", "pdf-processing"]
        shown = c.get("/admin/skills/code-review").json()
        assert shown["ref"] == "code-review@1" and shown["digest"].startswith("sha256:")
        assert ["code-review@1", "Bash", "bash", "git diff *"] in shown["policy"]
        assert [v["version"] for v in shown["versions"]] == ["1"]
        assert c.get("/admin/skills/code-review@1").json()["ref"] == "code-review@1"
        missing = c.get("/admin/skills/code-review@9")
        assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


@pytest.mark.parametrize(
    ("content_type", "make"),
    [
        ("application/zip", zip_folder),
        ("application/gzip", tar_folder),
        ("application/octet-stream", tar_folder),  # magic bytes decide
    ],
)
def test_upload_archives(gateway: dict[str, str], content_type: str, make: Any) -> None:
    with client(gateway) as c:
        body = make(SAMPLES / "issue-triage")
        r = c.post("/admin/skills", content=body, headers={"content-type": content_type})
        assert r.status_code == 200, r.text  # same digest as the bootstrap's sample
        assert r.json()["status"] == "unchanged" and r.json()["ref"] == "issue-triage@1"


def test_upload_skill_md_text_then_unchanged(gateway: dict[str, str]) -> None:
    with client(gateway) as c:
        headers = {"content-type": "text/markdown"}
        first = c.post("/admin/skills", content=SKILL_MD.encode(), headers=headers)
        assert first.status_code == 201, first.text
        result = first.json()
        assert result["status"] == "published" and result["publisher"] == "alice"
        assert result["added_tools"] == ["Read", "Bash(echo:*)"]
        again = c.post("/admin/skills", content=SKILL_MD.encode(), headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "unchanged"
        assert c.get("/healthz").json()["skills"] == 5


def test_invalid_skill_lists_every_problem_and_stores_nothing(gateway: dict[str, str]) -> None:
    text = "---\nname: Bad--Name\ndescription: ''\nallowed-tools: Bash(git:* Read\nextra: 1\n---\n"
    with client(gateway) as c:
        r = c.post("/admin/skills", content=text.encode(), headers={"content-type": "text/plain"})
        assert r.status_code == 422
        err = error_of(r)
        assert err["code"] == "skill_invalid"
        fields = {p["field"] for p in err["problems"]}
        assert {"name", "description", "allowed-tools", "extra"} <= fields, err
        assert all(set(p) == {"field", "rule", "value"} for p in err["problems"])
        assert len(c.get("/admin/skills").json()["skills"]) == 4


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "text/markdown", 422),
        (b"\xff\xfe not utf-8", "text/markdown", 422),
        (b"no frontmatter at all", "text/markdown", 422),
        (b"---\na: &x [1]\nb: *x\n---\n", "text/markdown", 422),
        (b"not a zip", "application/zip", 422),
        (b"PK\x03\x04 truncated zip", "application/zip", 422),
        (b"\x1f\x8b truncated gzip", "application/gzip", 422),
        (b"\xef\xbb\xbf---\nname: x\ndescription: y\n---\n", "text/markdown", 422),  # BOM
        (b"---\nname: x\ndescription: " + b"a" * 1_000_000 + b"\n---\n", "text/markdown", 422),
        (b"---\nname: x\nname: y\ndescription: z\n---\n", "text/markdown", 422),
        (b'{"name": "x"}', "application/json", 415),
        (b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b", 415),
    ],
)
def test_malformed_uploads_are_4xx(
    gateway: dict[str, str], body: bytes, content_type: str, status: int
) -> None:
    with client(gateway) as c:
        r = c.post("/admin/skills", content=body, headers={"content-type": content_type})
        assert r.status_code == status, r.text
        assert error_of(r)["message"]


def test_unknown_routes_and_methods_are_json(gateway: dict[str, str]) -> None:
    with client(gateway) as c:
        assert error_of(c.get("/admin/nothing"))["code"] == "not_found"
        r = c.delete("/admin/skills")
        assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"


def _oversize_gateway(start_gateway: StartGateway, tmp_path: Path) -> tuple[str, str]:
    settings = embedded_settings(
        tmp_path / "small", admin={"max_upload_bytes": 4096, "publish_sample_skills": False}
    )
    key = create_key(settings, "admin")
    return start_gateway(settings), key


def test_oversize_body_with_content_length_is_413(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    url, key = _oversize_gateway(start_gateway, tmp_path)
    r = httpx.post(f"{url}/admin/skills", content=b"x" * 10_000, headers={"x-api-key": key})
    assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"


def test_oversize_chunked_body_is_413(start_gateway: StartGateway, tmp_path: Path) -> None:
    url, key = _oversize_gateway(start_gateway, tmp_path)

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 1000

    r = httpx.post(f"{url}/admin/skills", content=chunks(), headers={"x-api-key": key})
    assert "content-length" not in r.request.headers  # really sent chunked
    assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"


def test_lying_content_length_never_500(start_gateway: StartGateway, tmp_path: Path) -> None:
    url, key = _oversize_gateway(start_gateway, tmp_path)
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /admin/skills HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
        "Content-Length: abc\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4"), reply


def test_lifespan_bootstrap_is_idempotent(start_gateway: StartGateway, tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "boot")
    said: list[str] = []
    for _ in range(2):
        url = start_gateway(settings, say=said.append)
        assert httpx.get(f"{url}/healthz").json()["skills"] == 4
    text = "\n".join(said)
    assert text.count("admin key") == 1 and text.count("agent key") == 1
    assert text.count("Published the sample skills") == 1
