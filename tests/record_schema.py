"""The ``--json`` record schema shipped in the package, for tests that check records against it."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import jsonschema


@cache
def validator() -> jsonschema.Draft202012Validator:
    """A validator for ``animeface_seg/schemas/record.schema.json``, read as package data."""
    schema = json.loads((resources.files("animeface_seg") / "schemas" / "record.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def assert_valid(record: dict) -> None:
    """Fail with every schema error of ``record`` (not just the first)."""
    errors = sorted(validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    assert not errors, f"{record}\n" + "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def records(stdout: str) -> list[dict]:
    """Every line of ``stdout`` as a record, each checked against the schema."""
    parsed = [json.loads(line) for line in stdout.splitlines()]
    for record in parsed:
        assert_valid(record)
    return parsed
