"""proxy.envelope: Magento's JSON error answers rewritten into the envelope on envelope
surfaces (and only there), and the edge's own errors in the envelope, end to end through
real servers."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.envelope import MAX_BYTES, MagentoErrors, fill
from tests.conftest import REPO, Harness, env, running_edge, write_config
from tests.servers import serving

SHIPPED = (REPO / "policies" / "storeoncloud.toml").read_text()
ENVELOPE = SHIPPED.replace('style = "problem"', 'style = "envelope"') + (
    "\n[ratelimit.tiers.tiny]\nrate = 1\nperiod = 3600\nburst = 1\n"
)
PROBLEM = SHIPPED

REQUIRED = '"%fieldName" is required. Enter and try again.'

# -- filling placeholders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "parameters", "text"),
    [
        (REQUIRED, {"fieldName": "searchCriteria"}, '"searchCriteria" is required. Enter and try again.'),
        (
            "No such entity with %fieldName = %fieldValue",
            {"fieldName": "customerId", "fieldValue": 7},
            "No such entity with customerId = 7",
        ),
        ('Invalid value of "%1" provided for the %2 field.', ["abc", "qty"], 'Invalid value of "abc" provided for the qty field.'),
        # strtr: the longest placeholder wins, and filled text is never filled again
        ("%1 and %10", list("abcdefghij"), "a and j"),
        ("%a %ab", {"a": "%ab", "ab": "B"}, "%ab B"),
        # PHP prints values its own way
        ("%1|%2|%3|%4|%5", [True, False, None, 2.0, 1.5], "1|||2|1.5"),
        ("%x", {"x": [1, {"y": 2}]}, '[1,{"y":2}]'),
        # a numeric key is positional in PHP (keys "0", "1" are ints there)
        ("%1-%2", {"0": "a", "1": "b"}, "a-b"),
        # nothing to fill, or parameters of another shape: the message as it came
        ("The consumer isn't authorized to access %resources.", None, "The consumer isn't authorized to access %resources."),
        ("%x", "not parameters", "%x"),
        ("%unknown stays", {"x": "1"}, "%unknown stays"),
        ("100% sure", {}, "100% sure"),
    ],
)  # fmt: skip
def test_fill(template: str, parameters: object, text: str) -> None:
    assert fill(template, parameters) == text


# -- which answers are rewritten ------------------------------------------------------------

JSON = [(b"content-type", b"application/json; charset=utf-8")]


@pytest.mark.parametrize(
    ("status", "headers", "length", "wanted"),
    [
        (400, JSON, 100, True),
        (500, JSON, None, True),  # chunked: the body decides
        (404, [(b"content-type", b"Application/JSON")], 10, True),
        (200, JSON, 100, False),
        (302, JSON, 100, False),
        (400, JSON, MAX_BYTES + 1, False),
        (400, JSON, MAX_BYTES, True),
        (400, [(b"content-type", b"text/html")], 100, False),
        (400, [(b"content-type", b"application/problem+json")], 100, False),
        (400, [], 100, False),
        (400, [*JSON, (b"content-encoding", b"gzip")], 100, False),
        (400, [*JSON, (b"content-encoding", b"identity")], 100, True),
    ],
)
def test_wants(
    status: int, headers: list[tuple[bytes, bytes]], length: int | None, wanted: bool
) -> None:
    assert MagentoErrors("r").wants(status, headers, length) is wanted


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b'["a"]', b'{"messages": "x"}', b'{"code": 5}', b"", b"\xff"]
)
def test_bodies_that_are_not_magento_errors_are_left_alone(body: bytes) -> None:
    assert MagentoErrors("r").rewrite(400, body) is None


def test_rewrite_named_and_aggregate() -> None:
    original = {
        "message": "One or more input exceptions have occurred.",
        "errors": [
            {"message": REQUIRED, "parameters": {"fieldName": "sku"}},
            {
                "message": 'Invalid value of "%1" provided for the %2 field.',
                "parameters": ["-1", "qty"],
            },
            "not an error object",
        ],
        "code": 0,
    }
    doc = json.loads(MagentoErrors("rid-9").rewrite(400, orjson.dumps(original)) or b"")
    assert doc == {
        "error": {
            "code": "BAD_REQUEST",
            "message": "One or more input exceptions have occurred.",
            "details": {
                "magento": original,
                "errors": [
                    {"message": '"sku" is required. Enter and try again.'},
                    {"message": 'Invalid value of "-1" provided for the qty field.'},
                ],
            },
            "request_id": "rid-9",
        }
    }  # fmt: skip


def test_rewrite_the_fatal_error_shape() -> None:
    original = {"messages": {"error": [{"code": 500, "message": "Internal Error."}]}}
    doc = json.loads(MagentoErrors("r").rewrite(500, orjson.dumps(original)) or b"")
    assert doc["error"]["code"] == "INTERNAL_ERROR"
    assert doc["error"]["message"] == "Internal Error."
    assert doc["error"]["details"] == {"magento": original}


# -- end to end: a Magento that answers what each test needs --------------------------------

BIG = orjson.dumps({"message": "x" * (MAX_BYTES + 10_000)})
GZIPPED = gzip.compress(orjson.dumps({"message": REQUIRED, "parameters": {"fieldName": "q"}}))


class ScriptedMagento:
    """Answers ``/rest/default/V1/products/<name>`` with the answer called ``name``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.released_in_time = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        name = scope["path"].rsplit("/", 1)[-1]
        json_type = (b"content-type", b"application/json; charset=utf-8")
        if name == "named":
            await _answer(
                send,
                400,
                [json_type],
                [
                    orjson.dumps(
                        {"message": REQUIRED, "parameters": {"fieldName": "searchCriteria"}}
                    )
                ],
            )
        elif name == "positional":
            body = {
                "message": 'Invalid value of "%1" provided for the %2 field.',
                "parameters": ["abc", "qty"],
            }
            await _answer(send, 400, [json_type], [orjson.dumps(body)])
        elif name == "aggregate":
            body = {
                "message": "One or more input exceptions have occurred.",
                "errors": [
                    {"message": REQUIRED, "parameters": {"fieldName": "sku"}},
                    {"message": REQUIRED, "parameters": {"fieldName": "name"}},
                ],
            }
            await _answer(send, 400, [json_type], [orjson.dumps(body)])
        elif name == "chunked":  # no Content-Length: sent chunked, in pieces
            body = orjson.dumps(
                {
                    "message": "No such entity with %fieldName = %fieldValue",
                    "parameters": {"fieldName": "customerId", "fieldValue": 7},
                }
            )
            await _answer(send, 404, [json_type], [body[:10], body[10:30], body[30:]], length=False)
        elif name == "html":
            await _answer(
                send, 502, [(b"content-type", b"text/html")], [b"<html>Bad gateway</html>"]
            )
        elif name == "list":
            await _answer(send, 400, [json_type], [b'["a"]'])
        elif name == "big":
            await _answer(send, 400, [json_type], [BIG])
        elif name == "gzip":
            await _answer(send, 400, [json_type, (b"content-encoding", b"gzip")], [GZIPPED])
        elif name == "ok":
            await _answer(send, 200, [json_type], [b'{"message":"%1 fine","parameters":["x"]}'])
        elif name == "bigstream":  # over the bound, chunked, and held until the client has it
            await send({"type": "http.response.start", "status": 500, "headers": [json_type]})
            await send({"type": "http.response.body", "body": BIG[:70_000], "more_body": True})
            self.released_in_time = await asyncio.to_thread(self.release.wait, 10)
            await send({"type": "http.response.body", "body": BIG[70_000:], "more_body": False})
        else:
            await _answer(
                send, 404, [json_type], [b'{"message":"Request does not match any route."}']
            )


async def _answer(
    send: Any,
    status: int,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    *,
    length: bool = True,
) -> None:
    if length:
        headers = [*headers, (b"content-length", str(sum(map(len, chunks))).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


@contextmanager
def _edge(directory: Path, policy_text: str, magento: Any) -> Iterator[Harness]:
    policy = directory / "policy.toml"
    policy.write_text(policy_text)
    with serving(magento) as upstream:
        path = write_config(directory, upstream.url, None, policy=policy)
        config = load_config(path, env=env())
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        with serving(edge) as server:
            yield Harness(server.url, path, config, magento, None, edge)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scripted() -> ScriptedMagento:
    return ScriptedMagento()


@pytest.fixture(scope="module")
def envelope_edge(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedMagento
) -> Iterator[Harness]:
    with _edge(tmp_path_factory.mktemp("envelope"), ENVELOPE, scripted) as h:
        yield h


@pytest.fixture(scope="module")
def problem_edge(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedMagento
) -> Iterator[Harness]:
    with _edge(tmp_path_factory.mktemp("problem"), PROBLEM, scripted) as h:
        yield h


def _get(h: Harness, name: str) -> httpx.Response:
    with h.client(h.token("products:read")) as c:
        return c.get(f"/api/v1/stores/acme/commerce/products/{name}")


def _envelope(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json")
    assert int(r.headers["content-length"]) == len(r.content)
    doc = r.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {
        "code",
        "message",
        "details",
        "request_id",
    }
    assert doc["error"]["request_id"] == r.headers["x-request-id"]
    return dict(doc["error"])


@pytest.mark.parametrize(
    ("name", "status", "code", "message", "magento"),
    [
        ("named", 400, "BAD_REQUEST", '"searchCriteria" is required. Enter and try again.',
         {"message": REQUIRED, "parameters": {"fieldName": "searchCriteria"}}),
        ("positional", 400, "BAD_REQUEST", 'Invalid value of "abc" provided for the qty field.',
         {"message": 'Invalid value of "%1" provided for the %2 field.', "parameters": ["abc", "qty"]}),
        ("chunked", 404, "RESOURCE_NOT_FOUND", "No such entity with customerId = 7",
         {"message": "No such entity with %fieldName = %fieldValue",
          "parameters": {"fieldName": "customerId", "fieldValue": 7}}),
    ],
)  # fmt: skip
def test_magento_errors_are_rewritten(
    envelope_edge: Harness, name: str, status: int, code: str, message: str, magento: dict[str, Any]
) -> None:
    r = _get(envelope_edge, name)
    assert r.status_code == status
    error = _envelope(r)
    assert (error["code"], error["message"]) == (code, message)
    assert error["details"] == {"magento": magento}


def test_an_aggregate_error_lists_each_message(envelope_edge: Harness) -> None:
    r = _get(envelope_edge, "aggregate")
    error = _envelope(r)
    assert error["message"] == "One or more input exceptions have occurred."
    assert error["details"]["errors"] == [
        {"message": '"sku" is required. Enter and try again.'},
        {"message": '"name" is required. Enter and try again.'},
    ]
    assert len(error["details"]["magento"]["errors"]) == 2


@pytest.mark.parametrize(
    ("name", "status", "body", "content_type"),
    [
        ("html", 502, b"<html>Bad gateway</html>", "text/html"),
        ("list", 400, b'["a"]', "application/json; charset=utf-8"),
        ("big", 400, BIG, "application/json; charset=utf-8"),
        ("gzip", 400, GZIPPED, "application/json; charset=utf-8"),
        ("ok", 200, b'{"message":"%1 fine","parameters":["x"]}', "application/json; charset=utf-8"),
    ],
)
def test_other_answers_pass_through_untouched(
    envelope_edge: Harness, name: str, status: int, body: bytes, content_type: str
) -> None:
    path = f"/api/v1/stores/acme/commerce/products/{name}"
    with (
        envelope_edge.client(envelope_edge.token("products:read")) as c,
        c.stream("GET", path) as r,
    ):
        raw = b"".join(r.iter_raw())
    assert r.status_code == status
    assert raw == body
    assert r.headers["content-type"] == content_type


def test_a_large_chunked_error_still_streams(
    envelope_edge: Harness, scripted: ScriptedMagento
) -> None:
    scripted.release.clear()
    path = "/api/v1/stores/acme/commerce/products/bigstream"
    token = envelope_edge.token("products:read")
    with envelope_edge.client(token) as c, c.stream("GET", path, timeout=5) as r:
        assert r.status_code == 500
        received = b""
        chunks = r.iter_raw()
        while len(received) < 70_000:  # arrives while Magento still holds the rest
            received += next(chunks)
        scripted.release.set()
        received += b"".join(chunks)
    assert scripted.released_in_time
    assert received == BIG


def test_the_problem_surface_passes_magento_errors_verbatim(problem_edge: Harness) -> None:
    r = _get(problem_edge, "named")
    assert r.status_code == 400
    assert r.content == orjson.dumps(
        {"message": REQUIRED, "parameters": {"fieldName": "searchCriteria"}}
    )
    assert r.headers["content-type"] == "application/json; charset=utf-8"


# -- end to end: the edge's own errors and the real stand-in --------------------------------


@pytest.fixture(scope="module")
def standin_envelope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    directory = tmp_path_factory.mktemp("standin-envelope")
    policy = directory / "policy.toml"
    policy.write_text(ENVELOPE)
    with running_edge(directory, panel=False, policy=policy) as h:
        yield h


def test_the_stand_ins_no_such_entity_error(standin_envelope: Harness) -> None:
    # (A list route without searchCriteria no longer reaches Magento's 400: the edge adds
    # the default page. Magento's 404 for an unknown customer has named placeholders.)
    with standin_envelope.client(standin_envelope.token("customers:read")) as c:
        r = c.get("/api/v1/stores/acme/commerce/customers/999")
    assert r.status_code == 404
    error = _envelope(r)
    assert error["message"] == "No such entity with customerId = 999"
    assert error["details"]["magento"]["parameters"] == {
        "fieldName": "customerId",
        "fieldValue": 999,
    }


def test_edge_errors_in_the_envelope(standin_envelope: Harness) -> None:
    h = standin_envelope
    product = "/api/v1/stores/acme/commerce/products/MB-01"
    with h.client() as c:
        r = c.get(product)
        assert (r.status_code, _envelope(r)["code"]) == (401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge"'
        r = c.get(product, headers={"Authorization": "Bearer soc_pat_live_" + "A" * 36})
        assert (r.status_code, _envelope(r)["code"]) == (401, "UNAUTHORIZED")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        r = c.get("/api/v1//stores")
        assert (r.status_code, _envelope(r)["code"]) == (400, "BAD_REQUEST")
    with h.client(h.token("orders:read")) as c:
        r = c.get(product)
        error = _envelope(r)
        assert (r.status_code, error["code"]) == (403, "INSUFFICIENT_SCOPE")
        assert error["details"] == {"required": "products:read"}
        r = c.get("/api/v1/stores/acme/commerce/no/such/route")
        assert (r.status_code, _envelope(r)["code"]) == (404, "RESOURCE_NOT_FOUND")
        r = c.get("/api/v1/stores/nowhere/commerce/products/MB-01")
        assert (r.status_code, _envelope(r)["code"]) == (404, "RESOURCE_NOT_FOUND")
    with h.client(h.token("products:read", stores=("gone",))) as c:
        r = c.get("/api/v1/stores/gone/commerce/products/MB-01")
        assert (r.status_code, _envelope(r)["code"]) == (502, "UPSTREAM_UNAVAILABLE")
    with h.client(h.token("products:read", tier="tiny")) as c:
        assert c.get(product).status_code == 200
        r = c.get(product)
        assert (r.status_code, _envelope(r)["code"]) == (429, "RATE_LIMITED")
