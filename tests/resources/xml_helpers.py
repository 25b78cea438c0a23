"""Helpers shared by the XML suites (test_xml_format.py, test_xml_reader.py,
test_xml_writer.py): the XML declaration `to_xml` writes, and the OperationOutcome an
`Invalid` structure error carries."""

from __future__ import annotations

from typing import Any

DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _outcome(diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": "structure", "diagnostics": diagnostics}
    if expression is not None:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
