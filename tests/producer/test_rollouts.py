"""Tests for rewardq.rollouts: reading and writing rollouts files, and the problems reported."""

from __future__ import annotations

import gzip
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from rewardq.rollouts import Record, read_records, write_records
from rewardq.wire.errors import InvalidInputError, Problem

LIMIT = 1 << 20


def write_bytes(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def problems_of(path: Path, max_record_bytes: int = LIMIT) -> list[Problem]:
    with pytest.raises(InvalidInputError) as info:
        read_records(path, max_record_bytes=max_record_bytes)
    assert info.value.source == str(path)
    return info.value.problems


def test_jsonl_lines_are_numbered_from_one_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "r.jsonl", '{"a": 1}\n\n   \n{"a": 2}\r\n{"a": 3}')

    assert read_records(path, max_record_bytes=LIMIT) == [
        Record(1, {"a": 1}),
        Record(4, {"a": 2}),
        Record(5, {"a": 3}),
    ]


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    assert read_records(write_bytes(tmp_path / "r.jsonl", ""), max_record_bytes=LIMIT) == []


def test_json_suffix_reads_json_lines_and_a_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": "\xc3\xa9"}\n')

    assert read_records(path, max_record_bytes=LIMIT) == [Record(1, {"a": "é"})]


def test_invalid_json_names_line_column_and_the_parser_error(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "r.jsonl", '{"a": 1}\n{"a": tru}\n{"a": 1\n')

    bad_literal, truncated = problems_of(path)

    assert (bad_literal.line, bad_literal.field) == (2, "")
    assert bad_literal.message.startswith("invalid JSON at column 7: invalid literal")
    assert truncated.line == 3
    assert "unexpected end of data" in truncated.message


def test_a_json_array_file_gets_a_hint(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "r.json", '[\n  {"a": 1}\n]\n')

    first = problems_of(path)[0]

    assert first.line == 1
    assert "one object per line" in first.message


@pytest.mark.parametrize(
    ("line", "kind"),
    [("[1, 2]", "array"), ('"text"', "string"), ("3.5", "number"), ("true", "boolean"), ("null", "null")],
)
def test_a_line_that_is_not_an_object_names_its_type(tmp_path: Path, line: str, kind: str) -> None:
    path = write_bytes(tmp_path / "r.jsonl", '{"a": 1}\n' + line + "\n")

    assert problems_of(path) == [Problem(field="", message=f"expected a JSON object, got {kind}", line=2)]


def test_a_record_over_the_limit_names_its_size_and_the_limit(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "r.jsonl", '{"a": 1}\n{"a": "' + "x" * 100 + '"}\n')

    (problem,) = problems_of(path, max_record_bytes=50)

    assert (problem.line, problem.field) == (2, "")
    assert "109 bytes" in problem.message
    assert "limit of 50" in problem.message


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    lines = ['{"ok": 1}', "{oops", "", "[]", '{"big": "' + "x" * 80 + '"}', '{"ok": 2}', "42"]
    path = write_bytes(tmp_path / "r.jsonl", "\n".join(lines) + "\n")

    problems = problems_of(path, max_record_bytes=64)

    assert [p.line for p in problems] == [2, 4, 5, 7]
    with pytest.raises(InvalidInputError, match="4 invalid input problems"):
        read_records(path, max_record_bytes=64)


def test_a_missing_file_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"

    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl"):
        read_records(path, max_record_bytes=LIMIT)


@pytest.mark.parametrize("name", ["rollouts.csv", "rollouts", "rollouts.gz"])
def test_an_unknown_suffix_names_the_supported_ones(tmp_path: Path, name: str) -> None:
    path = write_bytes(tmp_path / name, '{"a": 1}\n')

    (problem,) = problems_of(path)

    assert name in problem.message
    for suffix in (".jsonl", ".json", ".jsonl.gz", ".parquet"):
        assert suffix in problem.message
    with pytest.raises(InvalidInputError, match="supported"):
        write_records(path, [{"a": 1}])


def test_suffixes_are_case_insensitive(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "R.JSONL", '{"a": 1}\n')

    assert read_records(path, max_record_bytes=LIMIT) == [Record(1, {"a": 1})]


ROWS = [
    {"prompt": [{"role": "user", "content": "1+1?"}], "completion": "2", "solution": "\\boxed{2}", "step": 0},
    {"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4", "solution": None, "step": 1},
]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"

    assert write_records(path, iter(ROWS)) == 2

    assert path.read_bytes().count(b"\n") == 2
    assert [r.data for r in read_records(path, max_record_bytes=LIMIT)] == ROWS


def test_gzip_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"

    write_records(path, ROWS)

    assert gzip.decompress(path.read_bytes()).count(b"\n") == 2
    assert [r.data for r in read_records(path, max_record_bytes=LIMIT)] == ROWS


def test_a_truncated_gzip_file_is_a_problem_after_its_good_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    data = gzip.compress(b"".join(b'{"i": %d, "pad": "%s"}\n' % (i, b"x" * 50) for i in range(2000)))
    path.write_bytes(data[: len(data) // 2])

    (problem,) = problems_of(path)

    assert "corrupt gzip data after line" in problem.message


def test_parquet_round_trip_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"

    assert write_records(path, ROWS) == 2

    records = read_records(path, max_record_bytes=LIMIT)
    assert [r.line for r in records] == [1, 2]
    assert [r.data for r in records] == ROWS


def test_parquet_columns_are_the_union_of_all_keys(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"

    write_records(path, [{"a": 1}, {"a": 2, "b": "late"}])

    assert [r.data for r in read_records(path, max_record_bytes=LIMIT)] == [
        {"a": 1, "b": None},
        {"a": 2, "b": "late"},
    ]


def test_parquet_write_rejects_a_column_of_mixed_types_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"

    with pytest.raises(InvalidInputError) as info:
        write_records(path, [{"a": 1, "b": "x"}, {"a": "one", "b": "y"}])

    assert [p.field for p in info.value.problems] == ["a"]
    assert not path.exists()


def test_parquet_row_over_the_limit_and_unserializable_values_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    write_records(path, [{"text": "short", "price": None}, {"text": "x" * 200, "price": None}])
    assert problems_of(path, max_record_bytes=100)[0].line == 2

    write_records(path, [{"text": "short", "price": Decimal("1.50")}])
    (problem,) = problems_of(path)
    assert (problem.line, problem.field) == (1, "price")
    assert "not JSON-serializable" in problem.message


def test_a_file_that_is_not_parquet_is_one_problem(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "fake.parquet", '{"a": 1}\n')

    (problem,) = problems_of(path)

    assert "not a readable Parquet file" in problem.message


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    with pytest.raises(ImportError, match=r"pip install rewardq\[parquet\]"):
        read_records(tmp_path / "in.parquet", max_record_bytes=LIMIT)
    with pytest.raises(ImportError, match=r"pip install rewardq\[parquet\]"):
        write_records(tmp_path / "out.parquet", ROWS)
