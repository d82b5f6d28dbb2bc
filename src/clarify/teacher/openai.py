"""The API backend: any OpenAI-compatible chat-completions API through the official ``openai``
client (OpenAI, vLLM, Ollama, a llama.cpp server).

The key comes only from the environment (``OPENAI_API_KEY``) or a git-ignored ``.env`` in the
current directory, is never logged, cached or put in an exception, and is never sent over plain
``http://`` to a host other than this machine unless ``allow_insecure_http: true``.

HTTP 429/408/409/5xx, timeouts and connection errors are retried by the ``openai`` client
itself (exponential backoff, ``max_retries``); the retries it took are counted from each
response's ``retries_taken``. A 200 whose body is not a chat completion (not JSON, no choices)
is retried here up to ``max_retries`` times; if it stays malformed the request yields an
*invalid* completion (text "", ``error`` set) that is not cached, so a rerun asks again. A
request whose retries run out does not stop the others: the rest of the harvest completes and
is cached, then :class:`TeacherRequestsFailed` names what failed and what is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import os
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InputError
from .core import Request, Teacher, TeacherRequestsFailed

log = logging.getLogger("clarify.teacher")

DEFAULT_TIMEOUT_S = 600.0  # a local server queues requests: latency includes the queue

def _dotenv_values(path: Path) -> dict[str, str]:
    """KEY=VALUE pairs of a .env file (python-dotenv when installed, else a small parser)."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        values = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, _, value = line.partition("=")
            name = name.strip()
            if name.startswith("export "):
                name = name[len("export "):].strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            values[name] = value
        return values
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def env_setting(name: str) -> str | None:
    """``name`` from the environment, else from ``./.env`` (the environment wins)."""
    value = os.environ.get(name)
    if value:
        return value
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():
        return _dotenv_values(dotenv).get(name) or None
    return None


def _parse_chat_body(body: str) -> tuple[str, int, int, str | None] | None:
    """``(text, prompt_tokens, completion_tokens, finish_reason)`` or None if malformed."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            return None
        usage = data.get("usage") or {}
        return (text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                choice.get("finish_reason"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


class _Failure(Exception):
    """A request that gave up; ``fatal`` stops the harvest from issuing more."""

    def __init__(self, message: str, retries: int, fatal: bool = False):
        super().__init__(message)
        self.retries = retries
        self.fatal = fatal


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (localhost, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(base_url: str | None, settings: dict, role: str) -> None:
    """Refuse to send the key over plain http to another machine (unless allowed)."""
    if not base_url:
        return
    parts = urlsplit(base_url)
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname) \
            and not settings.get("allow_insecure_http", False):
        raise InputError(
            f"{role}.base_url: {parts.scheme}://{parts.hostname}... is plain http to another machine, "
            f"so OPENAI_API_KEY would cross the network unencrypted; use https, or set "
            f"{role}.allow_insecure_http: true if that network is trusted"
        )


class OpenAITeacher(Teacher):
    backend = "openai"
    needs_api_key = True
    deterministic = False  # sampled by the server: an invalid reply is asked again on the next run
    paid = True

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher", **options):
        api_key = env_setting("OPENAI_API_KEY")
        if not api_key:
            raise InputError(
                f"{role}.backend is openai but OPENAI_API_KEY is not set (environment or .env); "
                f"export it, put it in a git-ignored .env, or use {role}.backend "
                + ("gold (offline)" if role == "teacher" else "hf (a local model)")
            )
        base_url = settings.get("base_url") or env_setting("OPENAI_BASE_URL") or None
        check_transport(base_url, settings, role)
        super().__init__(settings, cache_path, role, **options)
        self.__api_key = api_key  # name-mangled; never logged, cached or shown
        self.base_url = base_url
        self.concurrency = int(settings.get("concurrency", 8))
        self.timeout_s = float(settings.get("timeout_s") or DEFAULT_TIMEOUT_S)
        self.max_retries = int(settings.get("max_retries", 6))
        if self._price() is None:
            log.warning("%s.prices has no entry for %r: its calls are counted as $0 "
                        "(only %s.max_total_tokens caps them)", self.role, self.model, self.role)

    def __repr__(self) -> str:
        return f"OpenAITeacher(model={self.model!r}, base_url={self.base_url!r})"

    def _scrub(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text.replace(self.__api_key, "***") if self.__api_key else text

    def _complete_uncached(self, items, record) -> None:
        try:
            asyncio.get_running_loop()
            inside_loop = True
        except RuntimeError:
            inside_loop = False
        if not inside_loop:
            asyncio.run(self._harvest(items, record))
            return
        # Called from inside an event loop (a notebook): run ours in a worker thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(lambda: asyncio.run(self._harvest(items, record))).result()

    async def _harvest(self, items, record) -> None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=self.__api_key, base_url=self.base_url, timeout=self.timeout_s,
                             max_retries=self.max_retries)
        semaphore = asyncio.Semaphore(self.concurrency)
        state = {"stop": None, "cap": [], "failures": [], "consecutive": 0}
        breaker = max(3, self.concurrency)

        async def one(key: str, request: Request) -> None:
            async with semaphore:
                if state["stop"]:
                    return
                reached = self.cap_reached()
                if reached:
                    state["stop"], state["cap"] = "cap", reached
                    return
                try:
                    completion, retries = await self._call(client, request)
                except _Failure as failure:
                    self.spend.failed += 1
                    self.spend.retries += failure.retries
                    state["failures"].append(str(failure))
                    state["consecutive"] += 1
                    if failure.fatal:
                        state["stop"] = "fatal"
                    elif state["consecutive"] >= breaker and not state["stop"]:
                        state["stop"] = "breaker"
                    return
                state["consecutive"] = 0
                # Committed to the cache before anything else can happen: never paid twice.
                record(key, completion, retries, cache=completion.error is None)

        try:
            await asyncio.gather(*(one(key, request) for key, request in items))
        finally:
            await client.close()
        if state["failures"]:
            failures = state["failures"]
            why = {"fatal": "stopped: ", "breaker": f"stopped after {breaker} failures in a row: "}.get(
                state["stop"], "")
            raise TeacherRequestsFailed(
                f"{self.role}: {why}{len(failures)} request{'s' if len(failures) != 1 else ''} failed (first: {failures[0]}); "
                f"{self.progress_note()}; rerun to resume "
                f"from the cache ({self.role}.base_url, {self.role}.timeout_s={self.timeout_s:g}, "
                f"{self.role}.max_retries={self.max_retries})"
            )
        if state["cap"]:
            raise self._spend_cap_error(state["cap"])

    async def _call(self, client, request: Request) -> tuple:
        """One logical request: the client's HTTP retries, plus retries of malformed bodies."""
        import openai

        retries = 0
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=[{"role": "user", "content": request.prompt}],
                    temperature=self.sampling["temperature"],
                    max_tokens=self.sampling["max_tokens"],
                    n=1,
                    seed=int(request.sample_index),  # best effort only; diversity comes from temperature
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise _Failure(f"the API at {self._where()} rejected OPENAI_API_KEY "
                               f"(HTTP {exc.status_code}); check the key", retries, fatal=True) from None
            except openai.NotFoundError as exc:
                raise _Failure(f"{self.role}.model {self.model!r}: the API at {self._where()} answered "
                               f"HTTP 404 ({self._scrub(exc.message)[:200]})", retries, fatal=True) from None
            except openai.APIStatusError as exc:
                retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
                raise _Failure(f"HTTP {exc.status_code} after {retries + (self.max_retries if retryable else 0)} "
                               f"retries: {self._scrub(exc.message)[:200]}",
                               retries + (self.max_retries if retryable else 0)) from None
            except openai.APITimeoutError:
                raise _Failure(f"timed out after {self.timeout_s:g} s, {retries + self.max_retries} retries",
                               retries + self.max_retries) from None
            except openai.APIConnectionError as exc:
                cause = exc.__cause__
                detail = f" ({type(cause).__name__})" if cause is not None else ""
                raise _Failure(f"cannot connect to {self._where()}{detail} after "
                               f"{retries + self.max_retries} retries", retries + self.max_retries) from None
            retries += int(getattr(raw, "retries_taken", 0) or 0)
            parsed = _parse_chat_body(raw.http_response.text)
            if parsed is not None:
                text, prompt_tokens, completion_tokens, finish_reason = parsed
                return self._completion(text, prompt_tokens, completion_tokens,
                                        self._cost(prompt_tokens, completion_tokens),
                                        time.perf_counter() - start, finish_reason), retries
            self.spend.malformed += 1
            if attempt < self.max_retries:
                retries += 1
                await asyncio.sleep(min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random()))
        log.warning("%s: malformed response bodies for %d attempts; recording an invalid completion",
                    self.role, self.max_retries + 1)
        return self._completion("", 0, 0, 0.0, time.perf_counter() - start,
                                error=f"malformed response body ({self.max_retries + 1} attempts)"), retries

    def _where(self) -> str:
        return self.base_url or "api.openai.com"
