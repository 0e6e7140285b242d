"""Negative tests of the pipeline spec validator: every mistake is one error naming file:line and the
field, and a valid spec still passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakehouse.services.pipelines import load, parse

GOOD = """\
name: good_spec
version: 1
transforms:
  - {name: t1, sql: t1.sql, output: silver.t1}
checks:
  - {table: silver.t1, type: row_count, min: 1}
"""


def _errors(text: str) -> list[str]:
    spec, errors = parse(text, "p.yaml")
    assert spec is None, "the spec should have been refused"
    return [str(e) for e in errors]


def test_valid_spec_parses() -> None:
    spec, errors = parse(GOOD, "p.yaml")
    assert errors == [] and spec is not None and spec.name == "good_spec"


@pytest.mark.parametrize(("text", "line", "fragment"), [
    # invalid YAML: the line of the problem
    ("name: x\nversion: 1\ntransforms: [\n  {name: a\n", 5, "invalid YAML"),
    # not a mapping
    ("- a\n- b\n", 1, "a pipeline spec is a YAML mapping"),
    # version below 1
    ("name: x\nversion: 0\n", 2, "version"),
    # unknown top-level key
    ("name: x\nversion: 1\nschedule: daily\n", 3, "schedule"),
    # a transform with both sql and python
    ("name: x\nversion: 1\ntransforms:\n  - {name: t, sql: a.sql, python: 'm:f', output: gold.t}\n", 4,
     "exactly one of sql or python"),
    # a transform writing outside the medallion layers
    ("name: x\nversion: 1\ntransforms:\n  - {name: t, sql: a.sql, output: public.t}\n", 4, "layer.table"),
    # python that is not module:function
    ("name: x\nversion: 1\ntransforms:\n  - {name: t, python: os.system, output: gold.t}\n", 4, "module:function"),
    # a transform name that is not snake case
    ("name: x\nversion: 1\ntransforms:\n  - {name: Bad-Name, sql: a.sql, output: gold.t}\n", 4, "lower_snake_case"),
    # a check on a table outside the layers
    ("name: x\nversion: 1\nchecks:\n  - {table: t, type: unique, columns: [id]}\n", 4, "layer.table"),
    # an unknown check type
    ("name: x\nversion: 1\nchecks:\n  - {table: gold.t, type: sometimes}\n", 4, "type"),
    # a row count with a negative minimum
    ("name: x\nversion: 1\nchecks:\n\n  - {table: gold.t, type: row_count, min: -1}\n", 5, "min"),
    # a source with neither connection nor url
    ("name: x\nversion: 1\nsources:\n  odoo: {kind: postgres}\n", 4, "exactly one of connection or url"),
    # a table in two ingest groups
    ("name: x\nversion: 1\nsources:\n  s: {kind: sqlite, url: 'sqlite:///x'}\ningest:\n  source: s\n  groups:\n"
     "    a: [t1]\n    b: [t1]\n", 7, "more than one group"),
    # max_attempts out of range
    ("name: x\nversion: 1\nmax_attempts: 99\n", 3, "max_attempts"),
])
def test_each_mistake_is_one_error_with_file_and_line(text: str, line: int, fragment: str) -> None:
    errors = _errors(text)
    assert errors, text
    assert any(e.startswith(f"p.yaml:{line}: ") and fragment in e for e in errors), errors


def test_missing_sql_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(GOOD)
    loaded, errors = load(tmp_path / "p.yaml")
    assert loaded is None
    assert [str(e) for e in errors] == [f"{tmp_path / 'p.yaml'}:4: transforms.0.sql: no file t1.sql"]
    (tmp_path / "t1.sql").write_text("SELECT 1 AS x")
    loaded, errors = load(tmp_path / "p.yaml")
    assert errors == [] and loaded is not None


def test_unreadable_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    loaded, errors = load(tmp_path / "absent.yaml")
    assert loaded is None and "cannot read" in str(errors[0])


def test_cli_validate_prints_every_error_and_exits_non_zero(tmp_path: Path) -> None:
    from lakehouse.cli.main import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 0\ntransforms:\n  - {name: t, sql: a.sql, output: public.t}\n")
    result = CliRunner().invoke(app, ["pipelines", "validate", str(bad)])
    assert result.exit_code != 0
    assert f"{bad}:2:" in result.output and f"{bad}:4:" in result.output
