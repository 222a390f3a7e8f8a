"""Trainers' rollout dumps (verl, ms-swift, TRL) and plain rows, mapped onto the rows rewardq scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardq.dumps import check_file, resolve_format
from rewardq.formats import FORMATS, Row, detect, parse_field_maps, rows_of
from rewardq.rollouts import rollout_files
from rewardq.wire.errors import InvalidInputError, Problem

# What verl's RayPPOTrainer._dump_generations writes to trainer.rollout_data_dir/<step>.jsonl.
VERL = [
    {"input": "user: 1+1?", "output": "\\boxed{2}", "gts": "2", "score": 1.0, "step": 3, "acc": True},
    {"input": "user: 2+2?", "output": "\\boxed{5}", "gts": "4", "score": 0.0, "step": 3, "acc": False},
]
# One line of ms-swift's GRPO completions.jsonl: a table of lists, one column per reward function.
SWIFT = {
    "step": ["7", "7"],
    "prompt": ["<|im_start|>user\n1+1?<|im_end|>", "<|im_start|>user\n2+2?<|im_end|>"],
    "completion": ["\\boxed{2}", "\\boxed{5}"],
    "MathAccuracy": [1.0, 0.0],
    "advantages": [0.7, -0.7],
    "solution": ["2", "4"],
}
# The columns of TRL's completions/completions_<step>.parquet (GRPOTrainer, log_completions=True).
TRL = [
    {"step": 5, "prompt": "1+1?", "completion": "2", "accuracy_reward": 1.0, "advantage": 0.5},
    {"step": 5, "prompt": "2+2?", "completion": "5", "accuracy_reward": 0.0, "advantage": -0.5},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rows(fmt_name: str, record: dict, line: int = 1) -> list[Row | Problem]:
    return list(rows_of(FORMATS[fmt_name], line, record))


def test_each_trainers_dump_is_detected_from_its_first_record() -> None:
    assert detect(VERL[0]).name == "verl"
    assert detect(SWIFT).name == "swift"
    assert detect(TRL[0]).name == "trl"
    assert detect({"prompt": "p", "completion": "c", "solution": "s"}).name == "plain"
    assert detect({"messages": [], "step": 1}).name == "plain"


def test_verl_maps_input_output_gts_and_keeps_its_own_scores_out_of_the_sample() -> None:
    [row] = rows("verl", VERL[0])
    assert isinstance(row, Row)
    assert row.row == {"prompt": "user: 1+1?", "completion": "\\boxed{2}", "solution": "2", "acc": True}
    assert row.record == VERL[0]  # written back whole, trainer's score included


def test_swift_tables_are_spread_into_rows_and_trainer_columns_stay_out() -> None:
    out = rows("swift", SWIFT, line=4)
    assert [r.line for r in out if isinstance(r, Row)] == [4, 4]
    second = out[1]
    assert isinstance(second, Row)
    assert second.row == {
        "prompt": "<|im_start|>user\n2+2?<|im_end|>",
        "completion": "\\boxed{5}",
        "MathAccuracy": 0.0,
        "solution": "4",
    }
    assert second.record["advantages"] == -0.7 and second.record["step"] == "7"


def test_a_swift_line_with_ragged_columns_is_a_problem_naming_the_line() -> None:
    [problem] = rows("swift", {**SWIFT, "solution": ["2"]}, line=9)
    assert isinstance(problem, Problem) and problem.line == 9 and "different lengths" in problem.message


def test_trl_drops_step_and_advantage_from_the_sample() -> None:
    [row] = rows("trl", TRL[1])
    assert isinstance(row, Row)
    assert row.row == {"prompt": "2+2?", "completion": "5", "accuracy_reward": 0.0}


def test_field_maps_override_and_extend_a_format() -> None:
    fmt = FORMATS["plain"].with_fields(parse_field_maps(["completion=answer_text", "solution=gold"]))
    [row] = list(rows_of(fmt, 1, {"answer_text": "42", "gold": "42", "q": "?"}))
    assert isinstance(row, Row) and row.row == {"completion": "42", "solution": "42", "q": "?"}
    [missing] = list(rows_of(fmt, 2, {"gold": "1"}))
    assert isinstance(missing, Problem) and missing.field == "answer_text" and missing.line == 2


@pytest.mark.parametrize("spec", ["completion", "=output", "completion="])
def test_a_malformed_field_map_names_the_option(spec: str) -> None:
    with pytest.raises(InvalidInputError, match="TARGET=SOURCE"):
        parse_field_maps([spec])


def test_a_target_mapped_twice_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="mapped twice"):
        parse_field_maps(["completion=a", "completion=b"])


def test_files_in_each_format_are_checked_and_counted(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    verl = write_jsonl(tmp_path / "3.jsonl", VERL)
    swift = write_jsonl(tmp_path / "completions.jsonl", [SWIFT, SWIFT])
    trl = tmp_path / "completions_00005.parquet"
    pq.write_table(pa.Table.from_pylist(TRL), trl)
    for path, name, count in [(verl, "verl", 2), (swift, "swift", 4), (trl, "trl", 2)]:
        fmt = resolve_format(path, "auto", {}, 1 << 20)
        assert fmt.name == name
        assert check_file(path, fmt, 1 << 20) == count


def test_the_first_pass_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "1.jsonl", [VERL[0], {**VERL[1], "output": 7}, VERL[0]])
    source.write_text(source.read_text() + "not json\n")
    with pytest.raises(InvalidInputError) as info:
        check_file(source, resolve_format(source, "auto", {}, 1 << 20), 1 << 20)
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "completion"), (4, "")]


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "empty.jsonl"
    source.write_text("\n")
    with pytest.raises(InvalidInputError, match="no records"):
        check_file(source, FORMATS["plain"], 1 << 20)


def test_a_directory_of_step_files_is_read_in_natural_order_and_problems_name_the_file(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "rollout_data_dir"
    dump.mkdir()
    for step in (1, 2, 10):
        write_jsonl(dump / f"{step}.jsonl", [{**VERL[0], "step": step}])
    (dump / "notes.txt").write_text("not a dump")
    assert [p.name for p in rollout_files(dump)] == ["1.jsonl", "2.jsonl", "10.jsonl"]
    fmt = resolve_format(dump, "auto", {}, 1 << 20)
    assert fmt.name == "verl" and check_file(dump, fmt, 1 << 20) == 3
    write_jsonl(dump / "2.jsonl", [{**VERL[0], "output": None}])
    with pytest.raises(InvalidInputError) as info:
        check_file(dump, fmt, 1 << 20)
    assert "2.jsonl, line 1, field 'completion'" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"no \.jsonl\.gz"):
        rollout_files(tmp_path / "empty")
