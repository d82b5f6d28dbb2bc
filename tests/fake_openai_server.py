"""A small OpenAI-compatible chat-completions server for tests (standard library only).

    with FakeOpenAIServer(api_key="sk-test-1", rate_429=0.15, rate_5xx=0.15) as server:
        ... AsyncOpenAI(base_url=server.base_url, api_key="sk-test-1") ...
        server.paid_counts()   # Counter of (prompt, seed) -> 200s with usage

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (ephemeral port). Faults are injected
deterministically: whether an attempt fails, and how, is a function of (seed, prompt,
request seed, attempt number of that same request), not of arrival order, so a run is
reproducible whatever the client's concurrency. Fault kinds:

* ``429`` with ``retry-after-ms: 1`` / ``retry-after: 0`` (the client retries almost at once),
* ``500`` / ``503``,
* ``slow``: the server sleeps ``slow_s`` (longer than the client timeout), then hangs up with
  no response,
* ``malformed``: a 200 whose body is truncated JSON (no usable choices, no usage),
* ``unparsed``: a paid 200 whose reply has no final answer (the teacher parser rejects it).

Otherwise it answers in the teacher format; ``answer_fn(prompt, seed) -> bool`` sets the final
answer (default: a hash of the prompt). A call is *paid* when the server sent a 200 with usage.
Every request is recorded (path, body, key, status, outcome, paid, usage).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "5xx", "slow", "malformed", "unparsed")


def default_answer(prompt: str, seed) -> bool:
    return hashlib.sha256(prompt.encode()).digest()[0] % 2 == 0


def teacher_text(answer: bool, prompt: str, seed) -> str:
    tag = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()[:8]
    word = "YES" if answer else "NO"
    return (
        "## Teaching Analysis\n"
        f"The student asked useful questions (reply {tag}).\n\n"
        "## Step-by-Step Reasoning\n"
        "1. What does the question hinge on? A single fact.\n"
        f"2. Is that fact true? {'Yes' if answer else 'No'}.\n\n"
        "## Final Assessment\n"
        f"Based on this analysis, the answer is: **{word}**"
    )


class FakeOpenAIServer:
    def __init__(self, api_key: str = "sk-test", seed: int = 0, rate_429: float = 0.0,
                 rate_5xx: float = 0.0, rate_slow: float = 0.0, rate_malformed: float = 0.0,
                 rate_unparsed: float = 0.0, slow_s: float = 1.0, delay_s: float = 0.0, answer_fn=None):
        self.api_key = api_key
        self.seed = seed
        self.rates = {"429": rate_429, "5xx": rate_5xx, "slow": rate_slow, "malformed": rate_malformed,
                      "unparsed": rate_unparsed}
        assert sum(self.rates.values()) < 1.0
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.answer_fn = answer_fn or default_answer
        self.records: list[dict] = []
        self._attempts: Counter = Counter()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifetime -----------------------------------------------------------------------------

    def start(self) -> "FakeOpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                server._handle(self)

            def do_GET(self):
                server._send(self, 404, {"error": {"message": "not found"}})

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # --- what the tests read ------------------------------------------------------------------

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)

    def paid(self) -> list[dict]:
        return [r for r in self.snapshot() if r["paid"]]

    def paid_counts(self) -> Counter:
        """(prompt, seed) -> number of paid replies."""
        return Counter(r["key"] for r in self.paid())

    def paid_tokens(self) -> tuple[int, int]:
        paid = self.paid()
        return (sum(r["usage"]["prompt_tokens"] for r in paid),
                sum(r["usage"]["completion_tokens"] for r in paid))

    def outcomes(self) -> Counter:
        return Counter(r["outcome"] for r in self.snapshot())

    # --- serving ------------------------------------------------------------------------------

    def _fault(self, key) -> str | None:
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
        draw = random.Random(f"{self.seed}|{key[0]}|{key[1]}|{attempt}").random()
        edge = 0.0
        for fault in FAULTS:
            edge += self.rates[fault]
            if draw < edge:
                return fault
        return None

    def _record(self, **entry) -> None:
        entry.setdefault("paid", False)
        entry.setdefault("usage", None)
        entry["time"] = time.time()
        with self._lock:
            self.records.append(entry)

    @staticmethod
    def _send(handler, status: int, payload, headers: dict | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw_body = handler.rfile.read(length) if length else b""
        path = handler.path
        try:
            body = json.loads(raw_body or b"null")
        except ValueError:
            body = None
        if path.rstrip("/") != "/v1/chat/completions":
            self._record(path=path, body=body, key=None, status=404, outcome="not_found")
            return self._send(handler, 404, {"error": {"message": "unknown path"}})
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._record(path=path, body=body, key=None, status=401, outcome="unauthorized")
            return self._send(handler, 401, {"error": {"message": "Incorrect API key provided.",
                                                       "type": "invalid_request_error",
                                                       "code": "invalid_api_key"}})
        try:
            prompt = body["messages"][-1]["content"]
            seed = body.get("seed")
        except (TypeError, KeyError, IndexError):
            self._record(path=path, body=body, key=None, status=400, outcome="bad_request")
            return self._send(handler, 400, {"error": {"message": "bad request"}})
        key = (prompt, seed)
        fault = self._fault(key)
        if fault == "429":
            self._record(path=path, body=body, key=key, status=429, outcome="429")
            return self._send(handler, 429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                              headers={"retry-after-ms": "1", "retry-after": "0"})
        if fault == "5xx":
            status = 500 if random.Random(f"{key}").random() < 0.5 else 503
            self._record(path=path, body=body, key=key, status=status, outcome="5xx")
            return self._send(handler, status, {"error": {"message": "The server had an error"}})
        if fault == "slow":
            self._record(path=path, body=body, key=key, status=None, outcome="slow")
            time.sleep(self.slow_s)
            handler.close_connection = True  # hang up without an answer; the client timed out
            return None
        if self.delay_s:
            time.sleep(self.delay_s)
        if fault == "malformed":
            self._record(path=path, body=body, key=key, status=200, outcome="malformed")
            return self._send(handler, 200, None, raw=b'{"id": "chatcmpl-x", "object": "chat.completion", "choi')
        text = teacher_text(bool(self.answer_fn(prompt, seed)), prompt, seed)
        if fault == "unparsed":  # a real model that rambled and never answered
            text = text.split("## Final Assessment")[0] + "I am not sure."
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        payload = {
            "id": "chatcmpl-" + hashlib.sha256(f"{key}|{time.time()}".encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        }
        # Recorded before the reply is written, so a client that has its answer always finds
        # the call on record.
        self._record(path=path, body=body, key=key, status=200, outcome=fault or "ok", paid=True, usage=usage)
        self._send(handler, 200, payload)
