"""What ``pip install`` ships: every package under ``proxy/`` (its backends included) and the
stand-in the demo serves, found by the same ``[tool.setuptools.packages.find]`` rule."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_shipped() -> None:
    rule = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]
    shipped = set(find_packages(str(ROOT), include=rule["include"]))
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("proxy", "magento_standin")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= shipped, sorted(on_disk - shipped)
    assert "proxy.backends.keystore" in shipped
    assert not any(p.startswith(("tests", "benchmarks")) for p in shipped)
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "data/*.tsv" in data["package-data"]["magento_standin"]
    assert (ROOT / "magento_standin" / "data" / "magento_routes.tsv").is_file()
