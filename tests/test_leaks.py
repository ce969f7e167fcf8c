"""Leaked-token reports in the format of GitHub's secret scanning partner program: signed
with ECDSA P-256 SHA-256 over the raw body (keys generated here), verified against keys
from config, revoking what they name, answered in the program's feedback format. Over real
HTTP, on both key stores."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxy._toml import ConfigError
from proxy.config import load_config
from proxy.leaks import MAX_REPORT_BYTES
from proxy.tokens import generate_token
from tests.conftest import Harness, env
from tests.governance import BACKENDS, GovernedEdge, governed_config, governed_edge

LEAKS = "/api/v1/secret-scanning/leaks"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"


def pem(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def keys_table(*entries: tuple[str, str]) -> str:
    return "".join(
        f'\n[[secret_scanning.public_keys]]\nkey_identifier = "{kid}"\nkey = """{key}"""\n'
        for kid, key in entries
    )


def sign(body: bytes, private: ec.EllipticCurvePrivateKey = KEY) -> str:
    return base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def post(
    edge: GovernedEdge | Harness,
    body: bytes,
    *,
    key_id: str | None = KEY_ID,
    signature: str | None = None,
    **kwargs: object,
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key_id is not None:
        headers["Github-Public-Key-Identifier"] = key_id
    if signature is not None or key_id is not None:
        headers["Github-Public-Key-Signature"] = signature if signature is not None else sign(body)
    return httpx.post(edge.url + LEAKS, content=body, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def report(*tokens: str, source: str = "commit") -> bytes:
    return json.dumps(
        [
            {
                "token": t,
                "type": "storeoncloud_pat",
                "url": "https://github.com/o/r/blob/x/a.env",
                "source": source,
            }
            for t in tokens
        ]
    ).encode()


@pytest.fixture(scope="module", params=BACKENDS)
def edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GovernedEdge]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    with governed_edge(
        tmp_path_factory.mktemp("leaks"),
        request.param,
        redis_url,
        extra=keys_table((KEY_ID, pem(KEY)), ("old-key", pem(OTHER))),
    ) as e:
        yield e


def _revoked(edge: GovernedEdge, token_id: str) -> bool:
    return bool(json.loads(edge.ok("tokens", "show", token_id))["revoked"])


def test_signed_report_revokes_our_tokens_and_answers_in_githubs_format(
    edge: GovernedEdge,
) -> None:
    live, live_id = edge.token("products:read")
    test, test_id = edge.token("products:read", stores=("lab",), extra=("--sandbox",))
    bystander, bystander_id = edge.token("products:read")
    stranger = generate_token()  # well-formed, never issued here
    junk = "ghp_notours"
    assert edge.get("/api/v1/stores", live).status_code == 200  # cached as valid
    r = post(edge, report(live, test, stranger, junk, live))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert answer == [
        {
            "token_hash": hashlib.sha256(t.encode()).hexdigest(),
            "token_type": "storeoncloud_pat",
            "label": label,
        }
        for t, label in [
            (live, "true_positive"),
            (test, "true_positive"),
            (stranger, "false_positive"),
            (junk, "false_positive"),
            (live, "true_positive"),
        ]
    ]
    for t in (live, test, stranger):
        assert t not in r.text  # hashes only
    # This edge sees it at once (its cache entry is dropped); every replica within 1 s.
    denied = edge.get("/api/v1/stores", live)
    assert denied.status_code == 401
    assert "reported as leaked" in denied.json()["detail"]
    assert edge.get("/api/v1/stores", test).status_code == 401
    shown = json.loads(edge.ok("tokens", "show", live_id))
    assert shown["revoked"] is True and shown["state"] == "revoked"
    assert shown["revoked_reason"] == (
        "leaked: reported by GitHub secret scanning "
        "(source commit, https://github.com/o/r/blob/x/a.env)"
    )
    assert _revoked(edge, test_id)
    assert not _revoked(edge, bystander_id)
    assert edge.get("/api/v1/stores", bystander).status_code == 200


def test_any_configured_key_verifies(edge: GovernedEdge) -> None:
    token, token_id = edge.token("products:read")
    body = report(token, source="gist_content")
    assert post(edge, body, key_id="old-key", signature=sign(body, OTHER)).status_code == 200
    assert _revoked(edge, token_id)
    assert (
        "source gist_content" in json.loads(edge.ok("tokens", "show", token_id))["revoked_reason"]
    )


def test_unsigned_or_badly_signed_reports_are_refused(edge: GovernedEdge) -> None:
    token, token_id = edge.token("products:read")
    body = report(token)
    cases = {
        "unsigned": (post(edge, body, key_id=None), 400, "must be signed"),
        "no signature": (
            httpx.post(
                edge.url + LEAKS, content=body, headers={"Github-Public-Key-Identifier": KEY_ID}
            ),
            400,
            "must be signed",
        ),
        "unknown key": (post(edge, body, key_id="nope"), 403, "key this edge does not know"),
        "other key": (post(edge, body, signature=sign(body, OTHER)), 403, "does not verify"),
        "other body": (post(edge, body, signature=sign(body + b" ")), 403, "does not verify"),
        "re-serialised": (
            post(edge, body, signature=sign(json.dumps(json.loads(body)).encode() + b"\n")),
            403,
            "does not verify",
        ),
        "not base64": (post(edge, body, signature="%%%"), 403, "does not verify"),
        "not DER": (
            post(edge, body, signature=base64.b64encode(b"x" * 70).decode()),
            403,
            "verify",
        ),
    }
    for name, (r, status, detail) in cases.items():
        assert r.status_code == status, name
        assert detail in r.json()["detail"], name
        assert r.headers["content-type"] == "application/problem+json"
    assert not _revoked(edge, token_id)
    assert edge.get("/api/v1/stores", token).status_code == 200


def test_signed_but_malformed_reports_are_400(edge: GovernedEdge) -> None:
    for body in (b"not json", b'{"token": "x"}', b'[{"token": 5}]', b'["x"]', b"\xff\xfe"):
        r = post(edge, body)
        assert r.status_code == 400, body
    assert post(edge, b"[]").json() == []


def test_oversized_reports_are_413(edge: GovernedEdge) -> None:
    big = b"[" + b" " * MAX_REPORT_BYTES + b"]"
    declared = post(edge, big)
    assert declared.status_code == 413
    assert str(MAX_REPORT_BYTES) in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_REPORT_BYTES // 65536 + 2):
            yield b" " * 65536

    streamed = httpx.post(
        edge.url + LEAKS,
        content=chunks(),
        headers={"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": "AA=="},
        timeout=10,
    )
    assert streamed.status_code == 413
    just_fits = b"[" + b" " * (MAX_REPORT_BYTES - 2) + b"]"
    assert post(edge, just_fits).status_code == 200


def test_only_post(edge: GovernedEdge) -> None:
    r = httpx.get(edge.url + LEAKS)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_not_configured_is_404(harness: Harness) -> None:
    body = report(generate_token())
    r = post(harness, body)
    assert r.status_code == 404
    assert "not configured" in r.json()["detail"]


def test_revocation_reaches_another_replica_within_the_bound(edge: GovernedEdge) -> None:
    # The other replica: a second edge app on the same key store, with its own cache, whose
    # TTL clock the test moves (the bound itself is measured on real processes in
    # tests/test_revocation_bound.py).
    from proxy.backends.keystore import open_keystore
    from proxy.backends.keystore.cached import CACHE_TTL_SECONDS, CachedKeyStore
    from proxy.edge import Edge
    from tests.conftest import FakeClock
    from tests.servers import serving

    clock = FakeClock()
    other = Edge.from_config(edge.config, open_keystore(edge.config))
    other.keystore = CachedKeyStore(other.keystore.store, clock=clock)
    with serving(other) as srv, httpx.Client(base_url=srv.url, timeout=10) as replica:
        token, _ = edge.token("products:read")
        headers = {"Authorization": f"Bearer {token}"}
        assert replica.get("/api/v1/stores", headers=headers).status_code == 200
        assert post(edge, report(token)).status_code == 200
        clock.now += CACHE_TTL_SECONDS * 0.9
        assert replica.get("/api/v1/stores", headers=headers).status_code == 200  # cached
        clock.now += CACHE_TTL_SECONDS * 0.2
        r = replica.get("/api/v1/stores", headers=headers)
    assert r.status_code == 401
    assert "reported as leaked" in r.json()["detail"]


# -- config -------------------------------------------------------------------------------------


def _config(tmp_path: Path, extra: str) -> Path:
    return governed_config(tmp_path, "http://127.0.0.1:9", "sqlite", extra=extra)


def test_keys_from_githubs_json_file(tmp_path: Path) -> None:
    doc = {
        "public_keys": [
            {"key_identifier": KEY_ID, "key": pem(KEY), "is_current": True},
            {"key_identifier": "old", "key": pem(OTHER), "is_current": False},
        ]
    }
    (tmp_path / "github-keys.json").write_text(json.dumps(doc))
    config = load_config(
        _config(tmp_path, '[secret_scanning]\npublic_keys_file = "github-keys.json"\n'), env=env()
    )
    assert set(config.secret_scanning_keys) == {KEY_ID, "old"}


def test_no_section_means_no_keys(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, ""), env=env()).secret_scanning_keys == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (keys_table(("rsa", pem(rsa.generate_private_key(65537, 2048)))), "must be an ECDSA P-256"),
        (
            keys_table(("p384", pem(ec.generate_private_key(ec.SECP384R1())))),
            "must be an ECDSA P-256",
        ),
        (
            keys_table(("bad", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")),
            "not a PEM",
        ),
        ('[[secret_scanning.public_keys]]\nkey = "x"\n', "string key_identifier and key"),
        ("[secret_scanning]\npublic_keys = 5\n", "must be an array of tables"),
        ('[secret_scanning]\npublic_keys_file = "nope.json"\n', "cannot read nope.json"),
        ("[secret_scanning]\nkeys = []\n", "secret_scanning.keys: unknown key"),
    ],
)
def test_bad_keys_are_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, extra), env=env())
    assert any(message in p and "config.toml" in p for p in info.value.problems), (
        info.value.problems
    )


def test_key_file_without_public_keys_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text('{"keys": []}')
    with pytest.raises(ConfigError, match='no "public_keys" array'):
        load_config(
            _config(tmp_path, '[secret_scanning]\npublic_keys_file = "k.json"\n'), env=env()
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(st.fixed_dictionaries({"token": st.text(max_size=60)}), max_size=3).map(
            lambda items: json.dumps(items).encode()
        ),
    ),
    key_id=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=70),
    signature=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120),
        st.binary(min_size=8, max_size=80).map(lambda b: base64.b64encode(b).decode()),
    ),
    signed=st.booleans(),
)
def test_no_report_is_a_5xx(
    edge: GovernedEdge, body: bytes, key_id: str, signature: str, signed: bool
) -> None:
    if signed:
        key_id, signature = KEY_ID, sign(body)
    try:
        r = post(edge, body, key_id=key_id, signature=signature)
    except httpx.LocalProtocolError:  # the client will not send it (e.g. a lone space)
        assume(False)
    assert r.status_code < 500, r.text
    assert r.status_code == 200 or r.headers["content-type"] == "application/problem+json"
    if r.status_code == 200:
        assert signed
