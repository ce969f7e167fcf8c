"""Deploy files: the Kubernetes manifests against the Kubernetes schemas (offline, the
schemas kubernetes-validate ships), the Dockerfile through hadolint, and the image's exact
entrypoint run outside a container (no Docker daemon here) as an unprivileged user with
its config read-only."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO
from tests.servers import free_port

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:  # raises ValidationError on a wrong or unknown field
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_a_wrong_manifest_is_refused() -> None:
    doc = yaml.safe_load_all(MANIFESTS[0].read_text())
    deployment = next(d for d in doc if d and d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][1]["livenessProbe"]["httpGet"]["prt"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_the_sidecar_probes_the_admin_port() -> None:
    docs = list(yaml.safe_load_all(MANIFESTS[0].read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    edge = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "edge"
    )
    assert edge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert edge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {"name": "admin", "containerPort": 9901} in edge["ports"]
    assert all(m["readOnly"] for m in edge["volumeMounts"])
    assert edge["resources"]["requests"]["cpu"]


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--format", "json", str(REPO / "Dockerfile")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0


def _dockerfile() -> tuple[list[str], dict[str, str]]:
    """The ENTRYPOINT (exec form) and ENV of the Dockerfile."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    entry: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENTRYPOINT "):
            entry = json.loads(line.removeprefix("ENTRYPOINT "))
        elif line.startswith("ENV "):
            for item in shlex.split(line.removeprefix("ENV ")):
                key, _, value = item.partition("=")
                env[key] = value
    return entry, env


@pytest.fixture
def readonly_config() -> Iterator[tuple[Path, Path, int]]:
    """A read-only copy of config and policies (as the ConfigMap mount) and a state
    directory the unprivileged user owns (the image's /var/lib/magento-edge)."""
    root = Path(tempfile.mkdtemp(prefix="edge-deploy-"))
    os.chmod(root, 0o755)  # noqa: S103 - nobody must traverse it to read the copy
    etc, state = root / "etc", root / "state"
    shutil.copytree(REPO / "policies", etc / "policies")
    state.mkdir()
    os.chown(state, 65534, 65534)  # nobody
    port = free_port()
    (etc / "config.toml").write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\npolicies = ["policies/storeoncloud.toml"]\n'
        f'[keystore]\nbackend = "sqlite"\npath = "{state}/edge.db"\n'
        '[stores.acme]\nname = "Acme"\nmagento_url = "http://127.0.0.1:9"\n'
        'credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }\n'
    )
    for path in [etc, *etc.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield etc, state, port
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_the_entrypoint_serves_as_nobody_with_a_readonly_config(
    readonly_config: tuple[Path, Path, int],
) -> None:
    etc, state, port = readonly_config
    entry, env = _dockerfile()
    assert entry == ["magento-edge", "serve"]
    config = env["MAGENTO_EDGE_CONFIG"]
    assert config == "/etc/magento-edge/config.toml"
    run_env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),  # this worktree's proxy/, as the image installs it
        "MAGENTO_EDGE_CONFIG": str(etc / "config.toml"),  # the mount point, here
        "ACME_MAGENTO_TOKEN": "integration-" + "c" * 20,
        "HOME": str(state),
    }
    proc = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *entry],
        env=run_env, cwd=state, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None, proc.stdout.read() if proc.stdout else ""
        assert answer.status_code == 200
        assert answer.json()["openapi"].startswith("3.")
        assert (state / "edge.db").exists()  # its state went where it may write
        assert not os.access(etc / "config.toml", os.W_OK) or os.geteuid() == 0
    finally:
        proc.send_signal(signal.SIGTERM)  # by its PID: the process this test started
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_configmaps_config_loads_with_the_shipped_policies(tmp_path: Path) -> None:
    """The sidecar's config.toml as the ConfigMap carries it, with the policies beside it
    as the policies ConfigMap mounts them and the Secret's variables set, is a config the
    edge loads (its Redis and issuer hosts exist only in a cluster: `check` would say so)."""
    docs = [
        d
        for d in yaml.safe_load_all((REPO / "deploy/kubernetes/magento-edge.yaml").read_text())
        if d
    ]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "config.toml" in d["data"])
    secret = next(d for d in docs if d["kind"] == "Secret")
    (tmp_path / "config.toml").write_text(config_map["data"]["config.toml"])
    (tmp_path / "policies").symlink_to(REPO / "policies")
    from proxy.config import load_config

    config = load_config(tmp_path / "config.toml", env=dict(secret["stringData"]))
    assert (config.admin.host, config.admin.port, config.log_format) == ("0.0.0.0", 9901, "json")
    assert {s.name for s in config.surfaces} == {"storeoncloud", "storeicu", "storefront"}
    assert config.keystore_backend == config.ratelimit_backend == "redis"
