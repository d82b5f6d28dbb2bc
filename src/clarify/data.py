"""Load yes/no question data and normalise it to one record format (splits: :mod:`clarify.splits`).

Supported sources (see :func:`load_records`):

* the original StrategyQA JSON file: a list of objects with ``qid``, ``question``,
  ``answer`` (bool), ``facts`` and ``decomposition``;
* JSON lines, CSV or parquet files with one row per question: columns ``question`` and
  ``answer``, optional ``qid``, optional ``facts``/``decomposition`` (lists; in CSV,
  JSON-encoded lists or empty cells);
* a BIG-bench ``task.json``: ``{"examples": [{"input", "target_scores", "target"}]}``;
* a Hugging Face hub dataset name (``owner/name``), whose rows are read like JSON lines.

Every source becomes a list of records with this key order::

    {"qid": str, "question": str, "answer": bool, "facts": [str], "decomposition": [str]}

plus ``"explanation": str`` for BIG-bench examples that carry a target text. Rows without
a qid get ``"q" + sha1(normalise_question(question))[:16]``, so a generated qid does not
depend on row order and exact-duplicate questions share one. Any bad input raises
:class:`~clarify.errors.InputError` with one line naming the file, the row and the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path

from clarify.errors import InputError

log = logging.getLogger(__name__)

FORMATS = ("auto", "strategyqa_json", "jsonl", "csv", "parquet", "bigbench")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".json": "json"}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LIST_FIELDS = ("facts", "decomposition")
ANSWER_WORDS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def _one_line(text: object) -> str:
    """Collapse all whitespace in ``str(text)`` so a message stays on one line."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------
# Field normalisation
# ---------------------------------------------------------------------------------------


def normalise_question(text: str) -> str:
    """Casefold, strip and collapse internal whitespace (the key for exact duplicates)."""
    return " ".join(text.casefold().split())


def normalise_answer(value, where: str) -> bool:
    """Turn a yes/no answer into a bool.

    Accepts bools, the ints 1 and 0, and the strings yes/no, true/false, 1/0 in any case
    with surrounding whitespace. Anything else raises an :class:`InputError` that names
    ``where`` (e.g. ``"data.jsonl: row 3 (qid abc)"``), the field and the bad value.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().casefold() in ANSWER_WORDS:
        return ANSWER_WORDS[value.strip().casefold()]
    raise InputError(
        f"{where}: field 'answer': unrecognised value {value!r} "
        "(expected yes/no, true/false, 1/0)"
    )


def _generated_qid(question: str) -> str:
    """A stable qid for a row that has none: ``q`` + 16 hex digits of the question's sha1."""
    return "q" + hashlib.sha1(normalise_question(question).encode("utf-8")).hexdigest()[:16]


def _string_list(value, where: str, field: str) -> list[str]:
    """Check that ``value`` is a list of strings (``None`` means absent: ``[]``)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"{where}: field '{field}': expected a list of strings, got {value!r}")
    return list(value)


def _row_where(name: str, index: int, row: dict) -> str:
    """``"<file>: row <i>"``, plus ``" (qid <qid>)"`` when the row carries a usable qid."""
    qid = row.get("qid")
    if isinstance(qid, (str, int)) and not isinstance(qid, bool) and str(qid).strip():
        return f"{name}: row {index} (qid {str(qid).strip()})"
    return f"{name}: row {index}"


def _record_from_row(row, index: int, name: str) -> dict:
    """Normalise one question row (JSON, JSONL, CSV, parquet or hub) into a record."""
    if not isinstance(row, dict):
        raise InputError(f"{name}: row {index}: expected an object, got {type(row).__name__}")
    where = _row_where(name, index, row)

    question = row.get("question")
    if question is None:
        raise InputError(f"{where}: field 'question': missing")
    if not isinstance(question, str):
        raise InputError(f"{where}: field 'question': expected a string, got {question!r}")
    if not question.strip():
        raise InputError(f"{where}: field 'question': empty")

    if row.get("answer") is None:
        raise InputError(f"{where}: field 'answer': missing")
    answer = normalise_answer(row["answer"], where)

    qid = row.get("qid")
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        raise InputError(f"{where}: field 'qid': expected a string, got {qid!r}")
    qid = str(qid).strip() if qid is not None else ""

    return {
        "qid": qid or _generated_qid(question),
        "question": question.strip(),
        "answer": answer,
        "facts": _string_list(row.get("facts"), where, "facts"),
        "decomposition": _string_list(row.get("decomposition"), where, "decomposition"),
    }


# ---------------------------------------------------------------------------------------
# Readers: each returns the raw rows of one source
# ---------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """Read a UTF-8 text file, turning read and decoding errors into an InputError."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 text: {_one_line(exc)}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {_one_line(exc.strerror or exc)}") from exc


def _parse_json(path: Path):
    """Parse a whole JSON document; report the line and column of a syntax error."""
    text = _read_text(path)
    if not text.strip():
        raise InputError(f"{path}: empty file (no rows)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc


def _strategyqa_rows(path: Path, document) -> list:
    """The rows of an original StrategyQA file: a top-level list of question objects."""
    if not isinstance(document, list):
        raise InputError(
            f"{path}: expected a JSON list of question objects, got {type(document).__name__}"
        )
    return document


def _read_jsonl(path: Path) -> list:
    """Parse JSON lines (blank lines skipped); a syntax error names its 1-based line."""
    rows = []
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: line {line_number} (row {len(rows)}): invalid JSON "
                f"at column {exc.colno}: {exc.msg}"
            ) from exc
    return rows


def _decode_csv_list(row: dict, index: int, name: str, field: str) -> None:
    """Replace a CSV cell holding a JSON-encoded list (or nothing) with the list itself."""
    cell = row.get(field)
    if cell is None or not cell.strip():
        row[field] = []
        return
    try:
        row[field] = json.loads(cell)
    except json.JSONDecodeError as exc:
        where = _row_where(name, index, row)
        raise InputError(
            f"{where}: field '{field}': expected a JSON-encoded list of strings ({exc.msg})"
        ) from exc


def _read_csv(path: Path) -> list[dict]:
    """Read a CSV file as strings (empty cells stay ``""``); decode the list columns."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty file (no rows)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path}: cannot parse CSV: {_one_line(exc)}") from exc
    rows = frame.to_dict(orient="records")
    for index, row in enumerate(rows):
        for field in LIST_FIELDS:
            _decode_csv_list(row, index, str(path), field)
    return rows


def _plain(value):
    """Convert a pandas/numpy cell to plain Python (arrays to lists, NaN/NA to None)."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _read_parquet(path: Path) -> list[dict]:
    """Read a parquet file into rows of plain Python values."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many unrelated types for a bad file
        raise InputError(f"{path}: cannot read parquet: {_one_line(exc)}") from exc
    return [
        {column: _plain(value) for column, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _bigbench_answer(scores, where: str) -> bool:
    """The answer of a BIG-bench example: the yes/no key of ``target_scores`` scored 1."""
    if not isinstance(scores, dict):
        raise InputError(f"{where}: field 'target_scores': expected an object, got {scores!r}")
    winners = [key for key, score in scores.items() if score == 1]
    if len(winners) != 1 or str(winners[0]).strip().casefold() not in ("yes", "no"):
        raise InputError(
            f"{where}: field 'target_scores': expected exactly one of Yes/No "
            f"with score 1, got {scores!r}"
        )
    return winners[0].strip().casefold() == "yes"


def _bigbench_records(path: Path, document) -> list[dict]:
    """Records from a BIG-bench ``task.json``; the target text becomes the explanation."""
    examples = document.get("examples") if isinstance(document, dict) else None
    if not isinstance(examples, list):
        raise InputError(f"{path}: field 'examples': expected a list of BIG-bench examples")
    records = []
    for index, example in enumerate(examples):
        where = f"{path}: row {index}"
        if not isinstance(example, dict):
            raise InputError(f"{where}: expected an object, got {type(example).__name__}")
        question = example.get("input")
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{where}: field 'input': missing or empty question")
        record = {
            "qid": _generated_qid(question),
            "question": question.strip(),
            "answer": _bigbench_answer(example.get("target_scores"), where),
            "facts": [],
            "decomposition": [],
        }
        target = example.get("target")
        if isinstance(target, list):
            target = " ".join(str(part) for part in target)
        if target is not None:
            if not isinstance(target, str):
                raise InputError(f"{where}: field 'target': expected a string, got {target!r}")
            record["explanation"] = target.strip()
        records.append(record)
    return records


def _load_hub_rows(name: str, split: str) -> list:
    """Rows of a Hugging Face hub dataset; any failure becomes a one-line InputError."""
    try:
        import datasets

        return list(datasets.load_dataset(name, split=split))
    except Exception as exc:  # network, auth, missing split, bad repo: all user-fixable
        raise InputError(
            f"could not load dataset '{name}' from the Hugging Face hub: "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc


# ---------------------------------------------------------------------------------------
# load_records
# ---------------------------------------------------------------------------------------


def _looks_like_hub_name(source: str) -> bool:
    """``owner/name`` with no data-file suffix (only asked for paths that do not exist)."""
    return bool(HUB_NAME.match(source)) and Path(source).suffix.lower() not in SUFFIX_FORMATS


def _resolve_format(path: Path, fmt: str, document=None) -> str:
    """The concrete format of ``path``: ``fmt`` itself, or guessed from suffix and layout."""
    if fmt != "auto":
        return fmt
    guessed = SUFFIX_FORMATS.get(path.suffix.lower())
    if guessed is None:
        raise InputError(
            f"{path}: cannot tell the format from the suffix '{path.suffix}' "
            "(expected .json, .jsonl, .csv or .parquet)"
        )
    if guessed != "json":
        return guessed
    if isinstance(document, list):
        return "strategyqa_json"
    if isinstance(document, dict) and isinstance(document.get("examples"), list):
        return "bigbench"
    raise InputError(
        f"{path}: unrecognised JSON layout: expected a list of question objects "
        "(StrategyQA) or an object with an 'examples' list (BIG-bench)"
    )


def _file_records(path: Path, fmt: str) -> list[dict]:
    """Read and normalise every row of a local file in the given (or guessed) format."""
    document = None
    if fmt in ("strategyqa_json", "bigbench") or (
        fmt == "auto" and path.suffix.lower() == ".json"
    ):
        document = _parse_json(path)
    fmt = _resolve_format(path, fmt, document)
    if fmt == "bigbench":
        return _bigbench_records(path, document)
    if fmt == "strategyqa_json":
        rows = _strategyqa_rows(path, document)
    elif fmt == "jsonl":
        rows = _read_jsonl(path)
    elif fmt == "csv":
        rows = _read_csv(path)
    else:
        rows = _read_parquet(path)
    return [_record_from_row(row, index, str(path)) for index, row in enumerate(rows)]


def _drop_duplicate_qids(records: list[dict], name: str) -> list[dict]:
    """Keep the first record of each qid; a repeated qid with another answer is an error."""
    first_row: dict[str, int] = {}
    kept = []
    for index, record in enumerate(records):
        qid = record["qid"]
        if qid not in first_row:
            first_row[qid] = index
            kept.append(record)
            continue
        earlier = records[first_row[qid]]
        if earlier["answer"] != record["answer"]:
            raise InputError(
                f"{name}: rows {first_row[qid]} and {index} (qid {qid}): field 'answer': "
                f"duplicate qid with conflicting answers {earlier['answer']!r} "
                f"and {record['answer']!r}"
            )
    dropped = len(records) - len(kept)
    if dropped:
        log.warning("%s: dropped %d duplicate row(s) repeating a qid and its answer", name, dropped)
    return kept


def load_records(source: str, fmt: str = "auto", hf_split: str = "train") -> list[dict]:
    """Load yes/no questions from a local file or a Hugging Face hub dataset.

    ``source`` is a file path or, when no such path exists and it looks like
    ``owner/name`` without a data-file suffix, a hub dataset loaded with
    ``datasets.load_dataset(source, split=hf_split)`` (``fmt`` is then ignored).
    ``fmt`` is one of ``"auto"``, ``"strategyqa_json"``, ``"jsonl"``, ``"csv"``,
    ``"parquet"`` or ``"bigbench"``; ``"auto"`` goes by suffix, and for ``.json`` by layout
    (a list is StrategyQA, an object with ``examples`` is BIG-bench).

    Returns records in source order (format in the module docstring). Rows without a qid
    get ``"q"`` + the first 16 hex digits of the sha1 of the normalised question. A
    repeated qid with the same answer keeps the first row (a warning says how many were
    dropped); with a different answer it is an error. Every problem raises an
    :class:`InputError` whose one-line message names the file, the row and the field.
    """
    source = os.fspath(source)
    if fmt not in FORMATS:
        raise InputError(f"unknown data format {fmt!r} (expected one of {', '.join(FORMATS)})")
    path = Path(source)
    if path.exists():
        records = _file_records(path, fmt)
        name = str(path)
    elif _looks_like_hub_name(source):
        name = f"{source} (hub split {hf_split})"
        rows = _load_hub_rows(source, hf_split)
        records = [_record_from_row(row, index, name) for index, row in enumerate(rows)]
    else:
        raise InputError(f"{source}: file not found")
    if not records:
        raise InputError(f"{name}: no rows found (empty data)")
    return _drop_duplicate_qids(records, name)
