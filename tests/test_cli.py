"""The `fhir-server` command run as a user runs it (`fhir_server/cli.py`): a subprocess of the
virtualenv's console script, its output parsed as a script would parse it."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FHIR_SERVER = Path(sys.executable).parent / "fhir-server"


def run_load(tmp_path: Path, *paths: Path, columns: int) -> subprocess.CompletedProcess[str]:
    """`fhir-server load --quiet` into a fresh SQLite file, on a terminal `columns` wide."""
    database = f"sqlite:///{tmp_path / 'fhir.db'}"
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("FHIR_SERVER_DATABASE_URL", None)
    command = [str(FHIR_SERVER), "load", "--quiet", "--database-url", database]
    return subprocess.run(
        [*command, *map(str, paths)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["bad-patient.json", "bad [bold]patient.json"])
def test_load_rejection_on_narrow_terminal_whole_path_and_outcome_one_line_each(
    tmp_path: Path, name: str
) -> None:
    folder = tmp_path.joinpath(
        "a-deliberately-long-directory-name-so-the-path-is-wider-than-the-terminal",
        "and-a-second-long-directory-name-to-be-sure-it-would-wrap-twice",
    )
    folder.mkdir(parents=True)
    bad = folder / name
    bad.write_text(json.dumps({"resourceType": "Patient", "id": "bad", "gender": "sideways"}))
    (folder / "good.json").write_text(json.dumps({"resourceType": "Patient", "id": "good"}))
    done = run_load(tmp_path, folder, columns=40)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == f"rejected {bad}"
    assert len(lines) == 3, lines
    outcome, summary = lines[1:]
    assert outcome.startswith("  ")
    assert json.loads(outcome) == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "code-invalid",
                "diagnostics": "Code 'sideways' is not allowed: use one of male, female, other, "
                "unknown (required binding)",
                "expression": ["Patient.gender"],
            }
        ],
    }
    assert summary == "loaded 1 (created 1, updated 0), unchanged 0, rejected 1"
    with contextlib.closing(sqlite3.connect(tmp_path / "fhir.db")) as conn:
        stored = conn.execute("SELECT res_type, res_id FROM resources").fetchall()
    assert stored == [("Patient", "good")]
