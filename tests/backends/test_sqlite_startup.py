"""Replicas sharing one SQLite key store file start at the same moment: each one's start-up
schema work (WAL switch, tables, added columns) waits its turn instead of failing with
"database is locked" (seen when two `magento-edge serve` processes started together)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import sys
from proxy.backends.keystore.sqlite import SQLiteKeyStore
SQLiteKeyStore(sys.argv[1])
"""


def test_many_processes_open_a_new_file_together(tmp_path: Path) -> None:
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "edge.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=Path(__file__).resolve().parents[2],
            )
            for _ in range(8)
        ]
        errors = [p.communicate(timeout=60)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, [e for e in errors if e]
