"""The transport's config keys (issue #14): ``timeouts.write``, ``.body``, ``.keepalive``
and ``max_connections`` on stores and upstreams: defaults, values that load, and values
refused at load with the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Config, ConfigError, Timeouts, load_config
from tests.test_config import SPEC_EXAMPLE, confdir  # noqa: F401 - the fixture

ENV = {"ACME_MAGENTO_TOKEN": "integration-" + "z" * 20}


def _load(directory: Path, text: str) -> Config:
    path = directory / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=ENV)


def _problems(directory: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(directory, text)
    return info.value.problems


def test_defaults(confdir: Path) -> None:  # noqa: F811
    config = _load(confdir, SPEC_EXAMPLE)
    acme, panel = config.stores["acme"], config.upstreams["panel"]
    assert acme.timeouts == Timeouts(connect=2.0, read=30.0)
    assert (acme.timeouts.write, acme.timeouts.body, acme.timeouts.keepalive) == (30, 30, 4)
    assert acme.timeouts.keepalive < 5  # below the common upstream keep-alive
    assert (acme.max_connections, panel.max_connections) == (64, 64)
    assert config.max_connections == 512  # [server]: all stores together, as before


def test_values_load(confdir: Path) -> None:  # noqa: F811
    text = SPEC_EXAMPLE.replace(
        "timeouts = { connect = 2.0, read = 30.0 }",
        "timeouts = { connect = 2.0, read = 30.0, write = 10, body = 5, keepalive = 2.5 }\n"
        "max_connections = 8",
    ).replace(
        'url = "http://127.0.0.1:9100"',
        'url = "http://127.0.0.1:9100"\nmax_connections = 3\ntimeouts = { keepalive = 1 }',
    )
    config = _load(confdir, text)
    t = config.stores["acme"].timeouts
    assert (t.write, t.body, t.keepalive) == (10.0, 5.0, 2.5)
    assert config.stores["acme"].max_connections == 8
    assert config.upstreams["panel"].max_connections == 3
    assert config.upstreams["panel"].timeouts.keepalive == 1.0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("read = 30.0 }", "read = 30.0, keepalive = 0 }", "stores.acme.timeouts.keepalive"),
        ("read = 30.0 }", "read = 30.0, write = -1 }", "stores.acme.timeouts.write"),
        ("read = 30.0 }", 'read = 30.0, body = "x" }', "stores.acme.timeouts.body"),
        ("read = 30.0 }", "read = 30.0, idle = 3 }", "stores.acme.timeouts.idle: unknown key"),
        ("read = 30.0 }", "read = 30.0 }\nmax_connections = 0", "stores.acme.max_connections"),
        ("read = 30.0 }", "read = 30.0 }\nmax_connections = 2.5", "stores.acme.max_connections"),
        ('9100"', '9100"\nmax_connections = -4', "upstreams.panel.max_connections"),
    ],
)
def test_bad_values_are_refused_with_their_key(
    confdir: Path,  # noqa: F811
    old: str,
    new: str,
    expected: str,
) -> None:
    problems = _problems(confdir, SPEC_EXAMPLE.replace(old, new, 1))
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith(str(confdir / "config.toml") + ":")  # file and line
