"""The server under hostile input (issue 20): body limit, overflows, wording, keep-alive, no 500."""

import json
import socket

import httpx
import numpy as np
import pytest

import recforge
from recforge.models import matching
from recforge.serve import MAX_BODY_BYTES, create_app
from serving_runs import LiveServer, TinyTwoTower, histories, make_two_stage

LIMIT = 20_000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    yield recforge.load(make_two_stage(tmp_path_factory.mktemp("hardening")))
    mp.undo()


@pytest.fixture(scope="module")
def url(bundle):
    with LiveServer(create_app(bundle, max_body_bytes=LIMIT)) as base:
        yield base


ROW = {"user_id": "u1", "item_id": "i2", "cat": "good", "age": 33.0}
USER = {"user_id": "u1", "hist_item_id": "i1|i2", "age": 30.0}


class Raw:
    """One keep-alive HTTP/1.1 connection driven by hand, to see what happens to the connection."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.buf = b""

    def send(self, head: str, body: bytes = b"") -> None:
        self.sock.sendall(head.encode() + b"\r\n\r\n" + body)

    def post(self, path: str, body: bytes, *, content_type: str = "application/json") -> None:
        self.send(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}",
            body,
        )

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._read()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._read()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def test_an_oversized_body_is_refused_413_before_it_is_read(url):
    conn = Raw(url)
    try:
        # headers announcing 100 MB and no body at all: the answer comes without reading it
        conn.send(
            "POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000000"
        )
        status, _, body = conn.response()
        assert status == 413 and str(LIMIT) in json.loads(body)["detail"]
    finally:
        conn.close()


def test_a_body_just_over_the_limit_gets_413_and_the_connection_stays_open(url):
    conn = Raw(url)
    try:
        big = json.dumps({"rows": [ROW] * 1000}).encode()
        assert len(big) > LIMIT
        conn.post("/score", big)
        status, headers, _ = conn.response()
        assert status == 413 and headers.get("connection") != "close"
        conn.post("/score", json.dumps({"rows": [ROW]}).encode())  # the same connection
        status, _, body = conn.response()
        assert status == 200, body
    finally:
        conn.close()


def test_a_chunked_body_is_cut_at_the_limit(url):
    conn = Raw(url)
    try:
        chunk = b"x" * 8000
        chunks = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
        conn.send(
            "POST /score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked",
            chunks,
        )
        status, _, _ = conn.response()
        assert status == 413
    finally:
        conn.close()


def test_the_default_limit_is_a_few_megabytes():
    assert 1 * 2**20 <= MAX_BODY_BYTES <= 16 * 2**20


BAD = [
    ("/score", {"rows": [dict(ROW, age=2**70)]}, "age"),  # int beyond int64 in a numeric column
    ("/score", {"rows": [dict(ROW, age=-(2**64))]}, "age"),
    ("/score", {"rows": [dict(ROW, age=1e300)]}, "age"),  # beyond float32 after scaling
    ("/score", {"rows": [dict(ROW, cat=2**70)]}, "cat"),
    ("/recommend", {"users": [dict(USER, hist_item_id=["i1", 2**70])]}, "hist_item_id"),
    ("/rank", {"user": {"user_id": "u1", "age": 2**70}, "candidates": ["i1"]}, "age"),
    ("/rank", {"user": {"user_id": 2**70, "age": 3.0}, "candidates": ["i1"]}, "user_id"),
    ("/rank", {"user": {"user_id": "u1", "age": 3.0}, "candidates": [{"item_id": 5, "cat": "good"}]}, None),
    ("/rank", {"user": {"user_id": "u1", "age": 3.0}, "candidates": [[1, 2]]}, None),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD)
def test_every_bad_value_is_a_422_in_recforge_words_on_a_kept_connection(url, path, body, field):
    conn = Raw(url)
    try:
        conn.post(path, json.dumps(body).encode())
        status, headers, raw = conn.response()
        assert status == 422, raw
        detail = json.loads(raw)["detail"]
        if field is not None:
            assert field in detail
        for foreign in ("pyarrow", "Arrow", "Traceback", "int64_t", "C long", "numpy"):
            assert foreign not in detail
        assert headers.get("connection") != "close"
        conn.post("/score", json.dumps({"rows": [ROW]}).encode())
        assert conn.response()[0] == 200
    finally:
        conn.close()


def test_an_internal_failure_is_500_without_closing_the_connection(url, bundle, monkeypatch):
    def boom(requests):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(bundle, "score_batch", boom)
    conn = Raw(url)
    try:
        conn.post("/score", json.dumps({"rows": [ROW]}).encode())
        status, _, body = conn.response()
        assert status == 500 and json.loads(body) == {"detail": "internal server error"}
        monkeypatch.undo()
        conn.post("/score", json.dumps({"rows": [ROW]}).encode())  # same connection, still served
        assert conn.response()[0] == 200
    finally:
        conn.close()


def test_metadata_does_not_show_the_server_path(url, bundle):
    meta = httpx.get(f"{url}/metadata").json()
    assert str(bundle.path.parent) not in json.dumps(meta)
    assert meta["name"] == bundle.path.name


def test_a_non_finite_model_output_is_a_422_naming_the_rows(bundle, monkeypatch):
    app = create_app(bundle)
    real = bundle.score_batch

    def nan_scores(requests):
        return [np.full_like(r, np.nan) if isinstance(r, np.ndarray) else r for r in real(requests)]

    monkeypatch.setattr(bundle, "score_batch", nan_scores)
    with LiveServer(app) as base:
        r = httpx.post(f"{base}/score", json={"rows": [ROW, ROW]})
    assert r.status_code == 422 and "finite" in r.json()["detail"] and "[0, 1]" in r.json()["detail"]


def test_answers_of_valid_rows_are_unchanged_by_the_checks(url, bundle):
    rows = histories(8, 3)[["user_id", "item_id", "cat", "age"]].to_dict("records")
    r = httpx.post(f"{url}/score", json={"rows": rows})
    assert r.status_code == 200
    np.testing.assert_array_equal(np.float32(r.json()["probabilities"]), bundle.score(rows))
