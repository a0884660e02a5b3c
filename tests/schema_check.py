"""Validate a command's JSON output against the committed JSON Schema (memdesc/data/schema)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from memdesc.results import SCHEMA_DIR


def committed(command: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{command}.json").read_text())


def check(command: str, data: dict | str | Path) -> dict:
    """Raise jsonschema.ValidationError unless ``data`` (a dict, or a JSON file) fits the schema."""
    if isinstance(data, str | Path):
        data = json.loads(Path(data).read_text())
    jsonschema.validate(data, committed(command), cls=jsonschema.Draft202012Validator)
    return data
