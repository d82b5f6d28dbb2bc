import os
import sys
import uuid
from pathlib import Path

# One intra-op thread for torch in the test process and what it starts (set before anything
# imports torch). The tests' models are tiny: a second thread only adds synchronisation, and
# on a busy 2-core runner it made generation tests ~9x slower (docs/decisions.md, "CI time").
# DAG jobs set their own count from the rule's threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_model import SHARED_DATA, build_tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path to a tiny random Llama + BPE tokenizer folder (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def shared_data():
    assert SHARED_DATA.exists(), f"labelled StrategyQA set missing: {SHARED_DATA} (clone with ../shared beside it)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_model_dir, shared_data):
    """A workdir where the whole tiny-model DAG ran to results/report.md (shared by the e2e tests)."""
    from test_workflow import snakemake, write_config

    workdir = tmp_path_factory.mktemp("dag")
    write_config(workdir, tiny_model_dir, shared_data)
    snakemake(workdir, "--cores", "2", "results/report.md")
    return workdir


@pytest.fixture
def api_key(monkeypatch, tmp_path):
    """A distinctive fake key in the environment; the cwd is an empty folder (no .env)."""
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return key
