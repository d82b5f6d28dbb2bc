"""Tests for clarify.data and clarify.splits: loading every source format, validation, splitting, sampling."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from clarify import data, splits
from clarify.data import load_records, normalise_answer, normalise_question
from clarify.splits import class_mix, file_sha256, sample_balanced, split_records
from clarify.errors import InputError

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared/data/strategyqa/strategyqa_train.json"

ROWS = [
    {
        "qid": "a1",
        "question": "Is water wet?",
        "answer": True,
        "facts": ["Water is a liquid."],
        "decomposition": ["What is water?", "Is #1 wet?"],
    },
    {"qid": "b2", "question": "Can pigs fly?", "answer": False, "facts": [], "decomposition": []},
]


def gen_qid(question: str) -> str:
    """The documented qid for a row without one."""
    return "q" + hashlib.sha1(normalise_question(question).encode()).hexdigest()[:16]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def assert_one_line_error(excinfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


@pytest.fixture(scope="module")
def strategyqa():
    """The real 2,290-row StrategyQA train file (a missing file fails, not skips)."""
    return load_records(str(SHARED_TRAIN))


# --------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------


def test_strategyqa_json(tmp_path):
    rows = [dict(row, term="t", description="d") for row in ROWS]
    records = load_records(str(write_json(tmp_path / "train.json", rows)))
    assert records == ROWS
    assert list(records[0]) == ["qid", "question", "answer", "facts", "decomposition"]


def test_jsonl_with_string_answers_and_missing_optional_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"qid": "a1", "question": "  Is water wet? ", "answer": "YES"},
            {"question": "Can pigs fly?", "answer": 0, "facts": ["Pigs lack wings."]},
        ],
    )
    path.write_text(path.read_text() + "\n  \n", encoding="utf-8")  # blank lines are skipped
    assert load_records(str(path)) == [
        dict(ROWS[0], facts=[], decomposition=[]),
        {
            "qid": gen_qid("Can pigs fly?"),
            "question": "Can pigs fly?",
            "answer": False,
            "facts": ["Pigs lack wings."],
            "decomposition": [],
        },
    ]


def test_generated_qid_is_stable_and_ignores_case_and_spacing(tmp_path):
    one = write_jsonl(tmp_path / "one.jsonl", [{"question": "Can  pigs FLY?", "answer": "no"}])
    two = write_jsonl(
        tmp_path / "two.jsonl",
        [{"question": "Other?", "answer": "yes"}, {"question": "can pigs fly?", "answer": "no"}],
    )
    assert load_records(str(one))[0]["qid"] == load_records(str(two))[1]["qid"]
    assert load_records(str(one))[0]["qid"] == gen_qid("can pigs fly?")


def test_csv_with_json_encoded_lists(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame(
        {
            "qid": ["a1", ""],
            "question": ["Is water wet?", "Can pigs fly?"],
            "answer": ["True", "no"],
            "facts": [json.dumps(["Water is a liquid."]), ""],
            "decomposition": [json.dumps(["What is water?", "Is #1 wet?"]), "[]"],
        }
    ).to_csv(path, index=False)
    records = load_records(str(path))
    assert records[0] == ROWS[0]
    assert records[1] == dict(ROWS[1], qid=gen_qid("Can pigs fly?"))


def test_csv_without_list_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\nIs water wet?,1\n", encoding="utf-8")
    assert load_records(str(path)) == [
        {
            "qid": gen_qid("Is water wet?"),
            "question": "Is water wet?",
            "answer": True,
            "facts": [],
            "decomposition": [],
        }
    ]


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame(ROWS).to_parquet(path)
    records = load_records(str(path))
    assert records == ROWS
    assert type(records[0]["answer"]) is bool and type(records[0]["facts"]) is list


def test_bigbench_task_json(tmp_path):
    task = {
        "name": "strategyqa",
        "examples": [
            {
                "input": "Is water wet?",
                "target_scores": {"Yes": 1, "No": 0},
                "target": "Yes. Water is a liquid.",
            },
            {
                "input": "Can pigs fly?",
                "target_scores": {"YES": 0, "no": 1},
                "target": ["No.", "Pigs lack wings."],
            },
        ],
    }
    records = load_records(str(write_json(tmp_path / "task.json", task)))
    assert records == [
        {
            "qid": gen_qid("Is water wet?"),
            "question": "Is water wet?",
            "answer": True,
            "facts": [],
            "decomposition": [],
            "explanation": "Yes. Water is a liquid.",
        },
        {
            "qid": gen_qid("Can pigs fly?"),
            "question": "Can pigs fly?",
            "answer": False,
            "facts": [],
            "decomposition": [],
            "explanation": "No. Pigs lack wings.",
        },
    ]
    assert load_records(str(tmp_path / "task.json"), fmt="bigbench") == records


def test_explicit_format_overrides_suffix(tmp_path):
    path = write_jsonl(tmp_path / "rows.txt", ROWS)
    assert load_records(str(path), fmt="jsonl") == ROWS
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "rows.txt", "suffix")


def test_duplicate_qid_same_answer_keeps_first_and_warns(tmp_path, caplog):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS + [dict(ROWS[0], question="Changed?")])
    with caplog.at_level(logging.WARNING, logger="clarify.data"):
        records = load_records(str(path))
    assert records == ROWS
    assert "dropped 1 duplicate" in caplog.text


# --------------------------------------------------------------------------------------
# Hugging Face hub
# --------------------------------------------------------------------------------------


def test_hub_failure_becomes_one_line_input_error(monkeypatch, tmp_path):
    import datasets

    def fail(name, split):
        raise ConnectionError("no route to host\nretry later")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_records("someone/strategyqa")
    message = assert_one_line_error(excinfo, "no route to host retry later")
    assert message.startswith(
        "could not load dataset 'someone/strategyqa' from the Hugging Face hub: "
    )


@pytest.mark.parametrize("as_dataset", [False, True])
def test_hub_success_rows_are_normalised(monkeypatch, tmp_path, as_dataset):
    import datasets

    rows = [
        {"question": "Is water wet?", "answer": "yes", "facts": ["Water is a liquid."]},
        {"question": "Can pigs fly?", "answer": "False", "facts": []},
    ]
    calls = []

    def fake(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows) if as_dataset else rows

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.chdir(tmp_path)
    records = load_records("someone/strategyqa", hf_split="validation")
    assert calls == [("someone/strategyqa", "validation")]
    assert [(r["qid"], r["answer"], r["facts"]) for r in records] == [
        (gen_qid("Is water wet?"), True, ["Water is a liquid."]),
        (gen_qid("Can pigs fly?"), False, []),
    ]


def test_hub_rows_are_validated(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: [{"question": "Q?"}])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_records("someone/strategyqa")
    assert_one_line_error(excinfo, "someone/strategyqa", "row 0", "'answer'")


# --------------------------------------------------------------------------------------
# Answer and question normalisation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("YES", True),
        ("no", False),
        (" true ", True),
        ("False", False),
        ("1", True),
        (" 0\n", False),
    ],
)
def test_normalise_answer_accepts(value, expected):
    assert normalise_answer(value, "f.jsonl: row 0") is expected


@pytest.mark.parametrize("value", [2, -1, "maybe", None, 1.5, 1.0, "", [True]])
def test_normalise_answer_rejects(value):
    with pytest.raises(InputError) as excinfo:
        normalise_answer(value, "f.jsonl: row 4 (qid x)")
    assert_one_line_error(excinfo, "f.jsonl: row 4 (qid x)", "field 'answer'", repr(value))


def test_normalise_question():
    assert normalise_question("  Is   water\tWET?\n") == "is water wet?"


# --------------------------------------------------------------------------------------
# Malformed input: one-line InputError naming file, row and field
# --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_records(str(tmp_path / "nope.jsonl"))
    assert str(excinfo.value) == f"{tmp_path / 'nope.jsonl'}: file not found"


def test_missing_file_that_looks_like_a_hub_name_with_suffix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as excinfo:
        load_records("data/train.json")
    assert str(excinfo.value) == "data/train.json: file not found"


def test_invalid_json_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"question": "Q?", "answer": true},\n  {"question": }\n]', "utf-8")
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "bad.json", "invalid JSON", "line 3", "column 16")


def test_invalid_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "Q?", "answer": true}\n\n{"question": "R?", "answer": tru}\n')
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "bad.jsonl", "line 3", "row 1", "invalid JSON")


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n \n"),
        ("empty.json", ""),
        ("list.json", "[]"),
        ("task.json", '{"examples": []}'),
        ("empty.csv", ""),
        ("header.csv", "question,answer\n"),
    ],
)
def test_empty_inputs(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, name, "no rows")


def test_unrecognised_json_layout(tmp_path):
    path = write_json(tmp_path / "odd.json", {"rows": []})
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "odd.json", "examples")


@pytest.mark.parametrize(
    "bad_row, field, detail",
    [
        ({"qid": "c3", "answer": True}, "'question'", "missing"),
        ({"qid": "c3", "question": "   ", "answer": True}, "'question'", "empty"),
        ({"qid": "c3", "question": 7, "answer": True}, "'question'", "7"),
        ({"qid": "c3", "question": "Q?"}, "'answer'", "missing"),
        ({"qid": "c3", "question": "Q?", "answer": "maybe"}, "'answer'", "'maybe'"),
        ({"qid": "c3", "question": "Q?", "answer": 1, "facts": "one"}, "'facts'", "'one'"),
        ({"qid": "c3", "question": "Q?", "answer": 1, "facts": ["a", 2]}, "'facts'", "list"),
        ({"qid": "c3", "question": "Q?", "answer": 1, "decomposition": {}}, "'decomposition'", ""),
        ({"qid": ["c3"], "question": "Q?", "answer": 1}, "'qid'", "['c3']"),
    ],
)
def test_bad_rows_in_jsonl(tmp_path, bad_row, field, detail):
    path = write_jsonl(tmp_path / "data.jsonl", ROWS + [bad_row])
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    row = "row 2 (qid c3)" if isinstance(bad_row["qid"], str) else "row 2"
    assert_one_line_error(excinfo, "data.jsonl", row, f"field {field}", detail)


def test_error_message_format_example(tmp_path):
    bad = {"qid": "abc", "question": "Is it?", "answer": "maybe"}
    path = write_jsonl(tmp_path / "data.jsonl", ROWS + [dict(ROWS[1], qid="c3"), bad])
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert str(excinfo.value) == (
        f"{path}: row 3 (qid abc): field 'answer': unrecognised value 'maybe' "
        "(expected yes/no, true/false, 1/0)"
    )


def test_bad_row_without_qid_names_row_index(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"question": "Q?", "answer": True}, {"answer": 1}])
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "data.jsonl: row 1: field 'question'")


def test_bad_row_in_strategyqa_json_and_parquet(tmp_path):
    json_path = write_json(tmp_path / "d.json", ROWS + [{"qid": "c3", "question": "Q?"}])
    with pytest.raises(InputError) as excinfo:
        load_records(str(json_path))
    assert_one_line_error(excinfo, "d.json", "row 2 (qid c3)", "field 'answer'")

    parquet_path = tmp_path / "d.parquet"
    pd.DataFrame({"qid": ["a", "b"], "question": ["Q?", "R?"], "answer": ["yes", None]}).to_parquet(
        parquet_path
    )
    with pytest.raises(InputError) as excinfo:
        load_records(str(parquet_path))
    assert_one_line_error(excinfo, "d.parquet", "row 1 (qid b)", "field 'answer'", "missing")


def test_csv_bad_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('qid,question,answer,facts\na,Q?,yes,"[""ok""]"\nb,R?,perhaps,\n', "utf-8")
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "d.csv", "row 1 (qid b)", "field 'answer'", "'perhaps'")

    path.write_text('qid,question,answer,facts\na,Q?,yes,not json\n', "utf-8")
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "d.csv", "row 0 (qid a)", "field 'facts'")

    path.write_text('qid,question,answer,facts\na,Q?,yes,"{""a"": 1}"\n', "utf-8")
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "d.csv", "row 0 (qid a)", "field 'facts'", "list of strings")


def test_duplicate_qid_with_conflicting_answers_names_both_rows(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", ROWS + [dict(ROWS[0], answer=False)])
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "data.jsonl", "rows 0 and 2", "qid a1", "field 'answer'")


@pytest.mark.parametrize(
    "example, field",
    [
        ({"target_scores": {"Yes": 1, "No": 0}}, "'input'"),
        ({"input": "Q?"}, "'target_scores'"),
        ({"input": "Q?", "target_scores": {"Yes": 1, "No": 1}}, "'target_scores'"),
        ({"input": "Q?", "target_scores": {"Maybe": 1, "No": 0}}, "'target_scores'"),
    ],
)
def test_bad_bigbench_examples(tmp_path, example, field):
    good = {"input": "Is water wet?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes."}
    path = write_json(tmp_path / "task.json", {"examples": [good, example]})
    with pytest.raises(InputError) as excinfo:
        load_records(str(path))
    assert_one_line_error(excinfo, "task.json", "row 1", f"field {field}")


def test_unknown_format_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(InputError) as excinfo:
        load_records(str(path), fmt="xml")
    assert_one_line_error(excinfo, "'xml'")


# --------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------


def test_load_real_strategyqa(strategyqa):
    assert class_mix(strategyqa) == {
        "n": 2290,
        "yes": 1071,
        "no": 1219,
        "yes_frac": pytest.approx(1071 / 2290),
    }


def test_split_real_file_sizes_and_labels(strategyqa):
    splits = split_records(strategyqa)
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 1443,
        "dev": 160,
        "test": 687,
    }
    assert (class_mix(splits["test"])["yes"], class_mix(splits["test"])["no"]) == (321, 366)
    assert (class_mix(splits["dev"])["yes"], class_mix(splits["dev"])["no"]) == (75, 85)
    for split in splits.values():
        assert [r["qid"] for r in split] == sorted(r["qid"] for r in split)


def test_split_real_file_is_disjoint(strategyqa):
    splits = split_records(strategyqa)
    qids = [{r["qid"] for r in split} for split in splits.values()]
    questions = [{normalise_question(r["question"]) for r in split} for split in splits.values()]
    for sets in (qids, questions):
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(s) for s in qids) == 2290


def test_split_is_deterministic_and_seed_dependent(strategyqa):
    first = split_records(strategyqa, seed=0)
    assert split_records(list(reversed(strategyqa)), seed=0) == first
    dumped = json.dumps(first)
    assert json.dumps(split_records(strategyqa, seed=0)) == dumped
    other = split_records(strategyqa, seed=1)
    assert {r["qid"] for r in other["test"]} != {r["qid"] for r in first["test"]}
    assert len(other["test"]) == 687


def test_split_max_questions_is_stratified_subset(strategyqa):
    splits = split_records(strategyqa, max_questions=40)
    everything = [r for split in splits.values() for r in split]
    assert len(everything) == 40 and len({r["qid"] for r in everything}) == 40
    assert (class_mix(everything)["yes"], class_mix(everything)["no"]) == (19, 21)
    assert all(split for split in splits.values())
    assert split_records(strategyqa, max_questions=40) == splits
    assert split_records(strategyqa, max_questions=5000) == split_records(strategyqa)


def test_duplicate_questions_never_straddle_splits():
    records = []
    for i in range(60):
        question = f"Question number {i // 3}?"  # groups of three exact duplicates
        if i % 3 == 1:
            question = "  " + question.upper() + " "
        records.append(
            {"qid": f"id{i:03d}", "question": question, "answer": (i // 3) % 2 == 0,
             "facts": [], "decomposition": []}
        )
    for seed in range(5):
        splits = split_records(records, seed=seed)
        where = {}
        for name, split in splits.items():
            for record in split:
                where.setdefault(normalise_question(record["question"]), set()).add(name)
        assert all(len(names) == 1 for names in where.values())
        assert sum(len(split) for split in splits.values()) == 60


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"test_fraction": 0}, "data.test_fraction"),
        ({"test_fraction": 1.0}, "data.test_fraction"),
        ({"test_fraction": "0.3"}, "data.test_fraction"),
        ({"dev_fraction": -0.1}, "data.dev_fraction"),
        ({"dev_fraction": 1}, "data.dev_fraction"),
        ({"max_questions": 0}, "data.max_questions"),
    ],
)
def test_split_rejects_bad_config(kwargs, key):
    with pytest.raises(InputError) as excinfo:
        split_records([dict(ROWS[0]), dict(ROWS[1])], **kwargs)
    assert_one_line_error(excinfo, key)


def test_split_that_leaves_no_training_data_is_rejected():
    records = [dict(ROWS[0], qid=f"y{i}") for i in range(2)]
    records += [dict(ROWS[1], qid=f"n{i}", question=f"N{i}?") for i in range(2)]
    records = [dict(r, question=f"{r['qid']}?") for r in records]
    with pytest.raises(InputError) as excinfo:
        split_records(records, test_fraction=0.6, dev_fraction=0.9)
    assert_one_line_error(excinfo, "data.dev_fraction", "no training records")


# --------------------------------------------------------------------------------------
# Sampling, class mix, hashing
# --------------------------------------------------------------------------------------


def make_records(n_yes: int, n_no: int) -> list[dict]:
    return [
        {"qid": f"{'y' if i < n_yes else 'n'}{i:03d}", "question": f"Q{i}?",
         "answer": i < n_yes, "facts": [], "decomposition": []}
        for i in range(n_yes + n_no)
    ]


@pytest.mark.parametrize("n, yes, no", [(10, 5, 5), (11, 5, 6), (1, 0, 1), (16, 8, 8)])
def test_sample_balanced_counts(n, yes, no):
    records = make_records(8, 12)  # more "no" records: the odd one goes to "no"
    sample = sample_balanced(records, n, seed=3)
    assert (class_mix(sample)["yes"], class_mix(sample)["no"]) == (yes, no)
    assert [r["qid"] for r in sample] == sorted(r["qid"] for r in sample)
    assert len({r["qid"] for r in sample}) == n
    assert sample_balanced(records, n, seed=3) == sample


def test_sample_balanced_odd_extra_goes_to_larger_label():
    sample = sample_balanced(make_records(12, 8), 11)
    assert (class_mix(sample)["yes"], class_mix(sample)["no"]) == (6, 5)


def test_sample_balanced_seeds_and_nesting():
    records = make_records(50, 50)
    small, large = sample_balanced(records, 10, seed=0), sample_balanced(records, 40, seed=0)
    assert {r["qid"] for r in small} <= {r["qid"] for r in large}
    assert sample_balanced(records, 10, seed=1) != small


def test_sample_balanced_all():
    records = make_records(3, 5)
    expected = sorted(records, key=lambda r: r["qid"])
    assert sample_balanced(list(reversed(records)), "all") == expected


@pytest.mark.parametrize("n", [0, -2, "some", True])
def test_sample_balanced_rejects_bad_n(n):
    with pytest.raises(InputError) as excinfo:
        sample_balanced(make_records(3, 3), n)
    assert_one_line_error(excinfo, "data.train_samples")


def test_sample_balanced_too_large():
    with pytest.raises(InputError) as excinfo:
        sample_balanced(make_records(3, 10), 8)
    assert_one_line_error(excinfo, "data.train_samples", "8", "3 yes", "10 no")


def test_class_mix_empty_and_counts():
    assert class_mix([]) == {"n": 0, "yes": 0, "no": 0, "yes_frac": 0.0}
    assert class_mix(make_records(1, 3)) == {"n": 4, "yes": 1, "no": 3, "yes_frac": 0.25}


def test_file_sha256(tmp_path):
    path = tmp_path / "blob.bin"
    payload = b"x" * (3 << 20) + b"tail"
    path.write_bytes(payload)
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()
    assert file_sha256(str(path)) == splits.file_sha256(path)
