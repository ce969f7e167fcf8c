"""CI's API fuzz (issue #17): schemathesis, a third-party fuzzer, against a fresh demo edge
for both documents, every check, the coverage, fuzzing and stateful phases, a small fixed
example budget and a fixed seed. Any finding fails the test, with schemathesis' report.

The run is bounded: ``--max-examples`` per operation, the seed fixed (the same cases each
run), and a wall-clock cap on the process as a last resort (a cap hit is a failure too).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openapi_demo import ROOT, DemoEdge, demo_edge

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 3
SEED = 17
RUN_CAP_SECONDS = 240

# Documented answers schemathesis' defaults do not expect, each for a stated reason:
# - 422 to a schema-valid write: the Idempotency-Key was already used for another request
#   (the fuzzer reuses keys across operations; the document says so on every write);
# - 501 from a route the partner API documents as "no Magento equivalent" (SPEC §4.2: a
#   501 NOT_IMPLEMENTED, documented, never a guess).
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "501"]
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEdge]:
    with demo_edge(tmp_path_factory.mktemp("fuzz")) as edge:
        yield edge


def command(url: str, token: str, config: Path) -> list[str]:
    """The command CI runs (README "OpenAPI and SDKs" shows it)."""
    return [
        str(SCHEMATHESIS), "--config-file", str(config), "run", url,
        "--checks", "all",
        "--phases", "coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "2",
        "--no-color",
        "--header", f"Authorization: Bearer {token}",
    ]  # fmt: skip


def run_schemathesis(url: str, token: str, tmp: Path) -> str:
    config = tmp / "schemathesis.toml"
    config.write_text(CONFIG)
    try:
        done = subprocess.run(
            command(url, token, config),
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=RUN_CAP_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"schemathesis ran over {RUN_CAP_SECONDS} s") from exc
    out = done.stdout + done.stderr
    summary = out[out.find("SUMMARY") - 40 :] if "SUMMARY" in out else out[-4000:]
    print(summary)  # the summary block, for CI's log (pytest -s) and the issue
    assert done.returncode == 0, out[-20000:]
    return out


# Known findings left (issue #17 is not closed by this test yet): OPTIONS on a literal path
# whose URL another method reaches through a templated route (PUT
# products/attribute-sets/groups is Magento's save of attribute set "groups") is a 405 whose
# Allow names that method, which the literal path item does not document (v1: 72, v3: 1);
# and a few schema-valid bodies Magento refuses (v1: 4, v3: 3). strict: once they are
# fixed this test passes and the marker must go.
KNOWN_FINDINGS = pytest.mark.xfail(
    strict=True, reason="issue #17: Allow on cross-shape OPTIONS, bodies Magento refuses"
)


@pytest.mark.timeout(RUN_CAP_SECONDS + 60)
@pytest.mark.parametrize(
    "surface", [pytest.param("v1", marks=KNOWN_FINDINGS), pytest.param("v3", marks=KNOWN_FINDINGS)]
)
def test_schemathesis_finds_nothing(demo: DemoEdge, surface: str, tmp_path: Path) -> None:
    url, token = (demo.v1, demo.pat) if surface == "v1" else (demo.v3, demo.jwt)
    out = run_schemathesis(f"{url}/openapi.json", token, tmp_path)
    tested = re.search(r"Tested: (\d+)", out)
    assert tested is not None and int(tested.group(1)) > 0
    assert "Stateful" in out and "Coverage" in out and "Fuzzing" in out


def test_the_readme_shows_the_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "schemathesis run" in readme
    assert "--checks all" in readme and "--phases coverage,fuzzing,stateful" in readme
