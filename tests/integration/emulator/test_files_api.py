"""Files API over real HTTP: upload, list, get, delete, content, signed URL."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from batchd.emulator import Behaviour, serve
from tests.integration.emulator.helpers import AUTH, Api, chat_file, stepped_config

ANY = object()


def assert_shape(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(actual) == set(expected), set(actual) ^ set(expected)
    for key, value in expected.items():
        if value is not ANY:
            assert actual[key] == value, (key, actual[key], value)


FILE_FIELDS = {
    "id": ANY,
    "object": "file",
    "bytes": ANY,
    "created_at": ANY,
    "filename": "in.jsonl",
    "purpose": "batch",
    "sample_type": "batch_request",
    "source": "upload",
    "num_lines": 3,
    "mimetype": "application/jsonl",
    "signature": None,
    "expires_at": None,
    "visibility": "workspace",
}


async def test_upload_returns_the_file_object(api: Api) -> None:
    content = chat_file(3)
    created = await api.upload(content)
    assert_shape(created, {**FILE_FIELDS, "bytes": len(content)})
    assert uuid.UUID(created["id"]).version == 4
    assert isinstance(created["bytes"], int) and isinstance(created["created_at"], int)


async def test_upload_defaults_tolerates_expiry_and_counts_an_unterminated_last_line(
    api: Api,
) -> None:
    created = await api.upload(b'{"a":1}\n{"b":2}', filename="x.txt", purpose=None, expiry="2")
    assert created["purpose"] == "fine-tune"
    assert created["sample_type"] == "instruct"
    assert created["mimetype"] == "text/plain"
    assert created["num_lines"] == 2
    assert created["expires_at"] == created["created_at"] + 2 * 3600


async def test_upload_validation_errors_are_fastapi_422(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    status, body, _ = await api.call("POST", "/v1/files", data=form)
    assert status == 422
    assert body == {
        "detail": [
            {"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}
        ]
    }

    form = aiohttp.FormData()
    form.add_field("purpose", "nope")
    form.add_field("visibility", "world")
    form.add_field("file", b"{}\n", filename="a.jsonl")
    status, body, _ = await api.call("POST", "/v1/files", data=form)
    assert status == 422
    assert [(d["type"], d["loc"]) for d in body["detail"]] == [
        ("enum", ["body", "purpose"]),
        ("literal_error", ["body", "visibility"]),
    ]
    assert api.emu.files() == []


async def test_upload_over_the_size_limit_is_413_and_leaves_nothing(session) -> None:
    config = stepped_config(behaviour=Behaviour(max_upload_bytes=1000))
    async with serve(config) as emu:
        api = Api(session, emu)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"x" * 5000, filename="big.jsonl")
        status, body, _ = await api.call("POST", "/v1/files", data=form)
        assert status == 413
        assert body["object"] == "error" and body["code"] == "file_too_large"
        assert emu.files() == []
        assert list(emu.data_dir.iterdir()) == []


async def test_get_has_deleted_false_and_delete_removes_the_file(api: Api) -> None:
    created = await api.upload(chat_file(3))
    got = await api.ok("GET", f"/v1/files/{created['id']}")
    assert got == {**created, "deleted": False}

    deleted = await api.ok("DELETE", f"/v1/files/{created['id']}")
    assert deleted == {"id": created["id"], "object": "file", "deleted": True}
    for path in (f"/v1/files/{created['id']}", f"/v1/files/{created['id']}/content"):
        status, body, _ = await api.call("GET", path)
        assert status == 404
        assert body["object"] == "error" and body["type"] == "invalid_request_error"
    status, _, _ = await api.call("DELETE", f"/v1/files/{created['id']}")
    assert status == 404


async def test_unknown_and_malformed_file_ids(api: Api) -> None:
    status, body, _ = await api.call("GET", f"/v1/files/{uuid.uuid4()}")
    assert status == 404
    assert set(body) == {"object", "message", "type", "param", "code"}
    status, body, _ = await api.call("GET", "/v1/files/not-a-uuid/content")
    assert status == 422
    assert body["detail"][0]["type"] == "uuid_parsing"
    assert body["detail"][0]["loc"] == ["path", "file_id"]


async def test_malformed_ids_can_be_404(session) -> None:
    async with serve(stepped_config(behaviour=Behaviour(invalid_id_status=404))) as emu:
        status, body, _ = await Api(session, emu).call("GET", "/v1/files/nope")
        assert (status, body) == (404, {"detail": "Not Found"})


async def test_content_is_streamed_octet_stream_with_length(api: Api) -> None:
    content = chat_file(50)
    created = await api.upload(content)
    status, body, resp = await api.call("GET", f"/v1/files/{created['id']}/content")
    assert status == 200
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert int(resp.headers["Content-Length"]) == len(content)
    assert body == content


async def _listing(api: Api, params: Any) -> dict[str, Any]:
    result: dict[str, Any] = await api.ok("GET", "/v1/files", params=params)
    return result


async def test_list_paginates_newest_first_with_total(api: Api) -> None:
    ids = [(await api.upload(chat_file(1), filename=f"f{i}.jsonl"))["id"] for i in range(5)]
    page0 = await _listing(api, {"page": 0, "page_size": 2})
    page2 = await _listing(api, {"page": 2, "page_size": 2})
    assert page0["object"] == "list" and page0["total"] == 5
    assert [f["id"] for f in page0["data"]] == ids[::-1][:2]
    assert [f["id"] for f in page2["data"]] == ids[:1]
    assert "deleted" not in page0["data"][0]
    no_total = await _listing(api, {"include_total": "false"})
    assert no_total["total"] is None and len(no_total["data"]) == 5


async def test_list_filters(api: Api) -> None:
    await api.upload(chat_file(1), filename="alpha.jsonl")
    await api.upload(b"text\n", filename="Beta.txt", purpose="fine-tune")
    await api.upload(b"%PDF", filename="scan.pdf", purpose="ocr")

    async def names(params: Any) -> list[str]:
        return sorted(f["filename"] for f in (await _listing(api, params))["data"])

    assert await names({"purpose": "batch"}) == ["alpha.jsonl"]
    assert await names({"search": "BETA"}) == ["Beta.txt"]
    assert await names([("mimetypes", "application/pdf"), ("mimetypes", "text/plain")]) == [
        "Beta.txt",
        "scan.pdf",
    ]
    assert await names([("sample_type", "batch_request"), ("sample_type", "batch_result")]) == [
        "alpha.jsonl"
    ]
    assert await names({"source": "mistral"}) == []
    assert len(await names({"source": "upload"})) == 3
    status, body, _ = await api.call("GET", "/v1/files", params={"sample_type": "weird"})
    assert status == 422 and body["detail"][0]["loc"] == ["query", "sample_type", 0]
    status, body, _ = await api.call("GET", "/v1/files", params={"page": "x"})
    assert status == 422 and body["detail"][0]["type"] == "int_parsing"


async def test_signed_url_flow(api: Api, session: aiohttp.ClientSession) -> None:
    content = chat_file(4)
    created = await api.upload(content)
    signed = await api.ok("GET", f"/v1/files/{created['id']}/url", params={"expiry": "2"})
    assert set(signed) == {"url"}
    async with session.get(signed["url"]) as resp:  # no Authorization header
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == content
    async with session.get(signed["url"].replace("sig=", "sig=0")) as resp:
        assert resp.status == 403
        assert resp.headers["Content-Type"].startswith("application/xml")
    api.emu.advance(2 * 3600 + 1)
    async with session.get(signed["url"]) as resp:
        assert resp.status == 403


async def test_signed_url_expiry_bounds_and_deleted_blob(
    api: Api, session: aiohttp.ClientSession
) -> None:
    created = await api.upload(chat_file(1))
    for bad in ("0", "169", "x"):
        status, body, _ = await api.call(
            "GET", f"/v1/files/{created['id']}/url", params={"expiry": bad}
        )
        assert status == 422 and body["detail"][0]["loc"] == ["query", "expiry"]
    signed = await api.ok("GET", f"/v1/files/{created['id']}/url")
    await api.ok("DELETE", f"/v1/files/{created['id']}")
    async with session.get(signed["url"]) as resp:
        assert resp.status == 404


async def test_files_need_auth(api: Api) -> None:
    status, body, resp = await api.call("GET", "/v1/files", headers={})
    assert status == 401
    assert set(body) == {"message", "request_id"} and body["message"] == "Unauthorized"
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    status, _, _ = await api.call("GET", "/v1/files", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _, _ = await api.call("GET", "/v1/files", headers=AUTH)
    assert status == 200


async def test_awkward_file_names_are_kept_and_served(api: Api) -> None:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("purpose", "batch")
    form.add_field("file", b"{}\n", filename='r\u00e9sum\u00e9 "final".jsonl')
    created = await api.ok("POST", "/v1/files", data=form)
    assert created["filename"] == 'r\u00e9sum\u00e9 "final".jsonl'
    status, _, resp = await api.call("GET", f"/v1/files/{created['id']}/content")
    assert status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="r_sum_ _final_.jsonl"'
