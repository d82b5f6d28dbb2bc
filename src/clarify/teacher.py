"""The teacher: turns teacher prompts into parsed completions, through a persistent cache.

Three backends share one interface (:meth:`Teacher.complete_many`), chosen by
``teacher.backend`` (DESIGN section 4):

* ``openai``: any OpenAI-compatible chat-completions API through the official ``openai``
  client (OpenAI, vLLM, Ollama, a llama.cpp server). The key comes only from the environment
  (``OPENAI_API_KEY``) or a git-ignored ``.env`` in the current directory, and is never logged,
  cached or put in an exception.
* ``hf``: a local transformers causal LM, batched generation, seeded per (qid, sample).
* ``gold``: an offline teacher that writes the teacher format from StrategyQA's own human
  decomposition and facts: free, deterministic and always right.

Reliability (DESIGN section 8):

* Every call goes through :class:`clarify.cache.CallCache` first; a completed call is
  committed to the cache as soon as it returns, so an interrupted harvest resumes where it
  stopped and a rerun pays nothing. Identical requests in one batch are sent once.
* Spend caps (``max_total_tokens``, ``max_cost_usd``; paid backend only) are checked before
  each new request; when one is reached no new request is issued, the ones in flight finish
  and are cached, and :class:`SpendCapReached` says what was spent and what remains.
* HTTP 429/408/409/5xx, timeouts and connection errors are retried by the ``openai`` client
  itself (exponential backoff, ``teacher.max_retries``); the retries it took are counted from
  each response's ``retries_taken``. A 200 whose body is not a chat completion (not JSON, no
  choices) is retried by this module up to ``max_retries`` times (counted in ``retries`` and
  ``malformed``); if it stays malformed the request yields an *invalid* completion (text "",
  ``parse_ok`` False, ``error`` set) that is **not** cached, so a rerun asks again. A request
  whose retries run out on HTTP errors or timeouts does not stop the others: the rest of the
  harvest completes and is cached, then :class:`TeacherRequestsFailed` names what failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .cache import CallCache, cache_key
from .errors import InputError
from .parsing import parse_teacher
from .prompts import answer_word

log = logging.getLogger(__name__)

BACKENDS = ("gold", "openai", "hf")


# --- data types --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One teacher call: the record it is about, the full prompt, and which sample it is."""

    record: dict
    prompt: str
    sample_index: int
    kind: str = "teach"          # "teach" | "rationalize"
    hint: bool | None = None     # the gold answer given as a hint (rationalize only)


@dataclass
class Completion:
    """A teacher response, parsed. Tokens, cost and latency are those of the call that made it
    (a cached completion reports the original call's numbers with ``cached=True``; the
    :class:`SpendTracker` counts only this run's real calls)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    backend: str
    model: str
    final: bool | None           # parsed final answer (YES -> True, NO -> False, None = invalid)
    steps: list[str]             # numbered steps of "## Step-by-Step Reasoning", without numbers
    parse_ok: bool               # final is not None and steps non-empty
    finish_reason: str | None = None
    error: str | None = None     # why the call gave no usable text (malformed bodies), else None


@dataclass
class SpendTracker:
    """What this run (one teacher object) spent; cache hits cost nothing."""

    requests_made: int = 0       # real calls that returned a completion (each one paid once)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0             # HTTP retries taken by the client + retries of malformed bodies
    malformed: int = 0           # 200 responses whose body was not a chat completion
    failed: int = 0              # requests that gave up (retries exhausted, rejected)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, completion: Completion, retries: int = 0) -> None:
        self.requests_made += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cost_usd += completion.cost_usd
        self.retries += retries

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["total_tokens"] = self.total_tokens
        return data


class SpendCapReached(InputError):
    """A spend cap was reached; completed calls are cached and a rerun resumes."""


class TeacherRequestsFailed(InputError):
    """Some requests failed for good (retries exhausted, rejected); the rest are cached."""


# --- the shared machinery ----------------------------------------------------------------------

class _Run:
    """Bookkeeping of one complete_many call (progress, for messages)."""

    def __init__(self, total: int, done: int):
        self.total = total
        self.done = done

    @property
    def remaining(self) -> int:
        return self.total - self.done


class Teacher:
    """Base class: cache look-ups, de-duplication, progress and accounting.

    Subclasses implement :meth:`_complete_uncached`, calling ``record(key, completion)`` for
    each request as soon as its completion exists (that commits it to the cache).
    """

    backend = "base"
    uses_cache = True
    paid = False  # spend caps apply to paid backends only

    def __init__(self, settings: dict, cache_path: str | os.PathLike | None = None, role: str = "teacher"):
        self.role = str(role)  # names the client in messages and config keys ("teacher", "judge")
        self.settings = dict(settings)
        self.model = str(settings.get("model", ""))
        self.sampling = {"temperature": float(settings.get("temperature", 0.0)),
                         "max_tokens": int(settings.get("max_tokens", 400))}
        self.spend = SpendTracker()
        if cache_path is None:
            cache_path = settings.get("cache")
        self.cache = CallCache(cache_path) if (self.uses_cache and cache_path) else None
        self._run: _Run | None = None

    # --- public API ---------------------------------------------------------------------------

    def key(self, request: Request) -> str:
        return cache_key(self.backend, self.model, request.prompt, self.sampling, request.sample_index)

    def complete_many(self, requests: Iterable[Request], progress: bool = True) -> list[Completion]:
        """Complete ``requests`` (cache first); the result is in the same order."""
        from tqdm.auto import tqdm

        requests = list(requests)
        results: list[Completion | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = self.key(request)
            if key in pending:
                pending[key].append(index)
                continue
            value = self.cache.get(key) if self.cache is not None else None
            if value is not None:
                results[index] = self._from_value(value, cached=True)
                self.spend.cache_hits += 1
            else:
                pending[key] = [index]
        waiting = sum(len(indices) for indices in pending.values())
        self._run = run = _Run(total=len(requests), done=len(requests) - waiting)
        bar = tqdm(total=len(requests), initial=run.done, disable=not progress, unit="req",
                   desc=f"{self.role}[{self.backend}]", dynamic_ncols=True)

        def record(key: str, completion: Completion, retries: int = 0, cache: bool = True) -> None:
            indices = pending[key]
            if cache and self.cache is not None:
                self.cache.put(key, self._to_value(completion))
            if completion.error is None:
                self.spend.add(completion, retries)
            else:
                self.spend.retries += retries
            results[indices[0]] = completion
            for duplicate in indices[1:]:
                results[duplicate] = dataclasses.replace(completion, cached=True, steps=list(completion.steps))
                if completion.error is None:
                    self.spend.cache_hits += 1
            run.done += len(indices)
            bar.update(len(indices))

        try:
            if pending:
                self._complete_uncached([(key, requests[indices[0]]) for key, indices in pending.items()],
                                        record)
        finally:
            bar.close()
            log.info("%s[%s] %s: %d requests, %d cached, %d made (%d retries, %d malformed), "
                     "%d tokens, $%.4f this run", self.role, self.backend, self.model, len(requests),
                     self.spend.cache_hits, self.spend.requests_made, self.spend.retries,
                     self.spend.malformed, self.spend.total_tokens, self.spend.cost_usd)
        missing = [index for index, completion in enumerate(results) if completion is None]
        if missing:  # pragma: no cover - a backend must record every request or raise
            raise RuntimeError(f"{self.role}[{self.backend}] returned no completion for {len(missing)} requests")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- helpers for subclasses ---------------------------------------------------------------

    def _complete_uncached(self, items: list[tuple[str, Request]], record: Callable) -> None:
        raise NotImplementedError

    def _completion(self, text: str, prompt_tokens: int, completion_tokens: int, cost_usd: float,
                    latency_s: float, finish_reason: str | None = None, error: str | None = None,
                    cached: bool = False) -> Completion:
        final, steps = parse_teacher(text)
        return Completion(text=text, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens),
                          cost_usd=float(cost_usd), latency_s=float(latency_s), cached=cached,
                          backend=self.backend, model=self.model, final=final, steps=steps,
                          parse_ok=final is not None and bool(steps), finish_reason=finish_reason, error=error)

    @staticmethod
    def _to_value(completion: Completion) -> dict:
        """What the cache stores: the raw call result (parsing is redone on load)."""
        return {"text": completion.text, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens, "cost_usd": completion.cost_usd,
                "latency_s": round(completion.latency_s, 4), "backend": completion.backend,
                "model": completion.model, "finish_reason": completion.finish_reason}

    def _from_value(self, value: dict, cached: bool) -> Completion:
        completion = self._completion(value.get("text", ""), value.get("prompt_tokens", 0),
                                      value.get("completion_tokens", 0), value.get("cost_usd", 0.0),
                                      value.get("latency_s", 0.0), value.get("finish_reason"), cached=cached)
        completion.backend = value.get("backend", self.backend)
        completion.model = value.get("model", self.model)
        return completion

    def cap_reached(self) -> list[str]:
        """The spend-cap keys this run has reached (empty for free backends)."""
        if not self.paid:
            return []
        reached = []
        cap_tokens = self.settings.get("max_total_tokens")
        if cap_tokens is not None and self.spend.total_tokens >= cap_tokens:
            reached.append(f"{self.role}.max_total_tokens")
        cap_cost = self.settings.get("max_cost_usd")
        if cap_cost is not None and self._price() is not None and self.spend.cost_usd >= cap_cost:
            reached.append(f"{self.role}.max_cost_usd")
        return reached

    def _price(self) -> dict | None:
        return (self.settings.get("prices") or {}).get(self.model)

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        price = self._price()
        if price is None:
            return 0.0
        return (prompt_tokens * float(price["input_per_mtok"])
                + completion_tokens * float(price["output_per_mtok"])) / 1e6

    def _spend_cap_error(self, reached: list[str]) -> SpendCapReached:
        run = self._run or _Run(0, 0)
        return SpendCapReached(
            f"{self.role} spend cap reached ({' and '.join(reached)}): this run spent "
            f"${self.spend.cost_usd:.4f} of max_cost_usd {self.settings.get('max_cost_usd')} and "
            f"{self.spend.total_tokens} of max_total_tokens {self.settings.get('max_total_tokens')} tokens "
            f"on {self.spend.requests_made} requests; {run.done} of {run.total} requests are done, "
            f"{run.remaining} remaining. Completed calls are cached: rerun (raising the cap if "
            f"needed) to resume from the cache without paying for them again"
        )


# --- gold: the offline teacher ---------------------------------------------------------------

_STOPWORDS = set("""a an the of in on at to for from by with and or not no yes is are was were be been
being do does did has have had can could would will should may might must than then that this these
those what which who whom whose when where why how many much more most less any some all each both
it its their there they them he she his her as into over under about also only other such same
answer step""".split())
_REFERENCE = re.compile(r"#\s?(\d+)")
_YES_NO_START = re.compile(r"^(is|are|was|were|do|does|did|can|could|would|will|should|has|have|had|"
                           r"might|may|must|shall|am)\b", re.IGNORECASE)
_DRAFT_GUESS = re.compile(r"^Draft guess:\s*(Yes|No)\b", re.IGNORECASE | re.MULTILINE)
_DRAFT_QUESTIONS = re.compile(r"^Draft questions:\s*\S", re.IGNORECASE | re.MULTILINE)


def _content_words(text: str) -> set[str]:
    words = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def _is_yes_no(question: str) -> bool:
    """Whether a sub-question asks yes/no (it, or its last clause, opens with an auxiliary)."""
    return any(_YES_NO_START.match(part.strip()) for part in (question, question.rsplit(",", 1)[-1]))


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if not text or text[-1] in ".?!" else text + "."


def gold_response(record: dict, prompt: str | None = None) -> str:
    """The teacher-format response the gold teacher writes for ``record``.

    Steps are the human decomposition's sub-questions (``#2`` -> "the answer to step 2"),
    each followed by the supporting facts that share the most content words with it; a final
    yes/no sub-question is answered from the gold label (in StrategyQA the last step of a
    decomposition answers the question). The draft guess is mentioned only when ``prompt``
    shows one.
    """
    qid = record.get("qid", "?")
    decomposition = [" ".join(str(q).split()) for q in (record.get("decomposition") or []) if str(q).strip()]
    if not decomposition:
        raise InputError(
            f"record {qid}: field 'decomposition' is missing or empty; the gold teacher needs "
            f"StrategyQA's human decomposition (use the original StrategyQA data, or teacher.backend openai/hf)"
        )
    if not isinstance(record.get("answer"), bool):
        raise InputError(f"record {qid}: field 'answer' must be true or false for the gold teacher")
    gold = record["answer"]
    facts = [_sentence(f) for f in (record.get("facts") or []) if str(f).strip()]

    # Attach each fact to the sub-question it shares most content words with, preferring the
    # look-up steps over the ones that combine earlier answers (those that cite "#k"); a fact
    # that shares no word with any goes with the last look-up step.
    attached: list[list[str]] = [[] for _ in decomposition]
    words = [_content_words(_REFERENCE.sub(" ", q)) for q in decomposition]
    lookups = [i for i, q in enumerate(decomposition) if not _REFERENCE.search(q)] or list(range(len(decomposition)))
    for fact in facts:
        fact_words = _content_words(fact)
        overlaps = [len(fact_words & w) for w in words]
        best = max(lookups, key=lambda i: (overlaps[i], -i))
        if overlaps[best] == 0:
            best = max(range(len(decomposition)), key=lambda i: (overlaps[i], i in lookups, -i))
            if overlaps[best] == 0:
                best = lookups[-1]
        attached[best].append(fact)

    steps = []
    last = len(decomposition) - 1
    for index, question in enumerate(decomposition):
        question = _REFERENCE.sub(lambda m: f"the answer to step {m.group(1)}", question)
        question = question[:1].upper() + question[1:]
        parts = [_sentence(question)] + attached[index]
        if index == last and _is_yes_no(question):
            word = answer_word(gold)
            parts.append(f"So, {word.lower()}." if attached[index] else f"{word}.")
        steps.append(" ".join(parts))

    n = len(decomposition)
    count = "one sub-question" if n == 1 else f"{n} sub-questions"
    analysis = []
    guess = _DRAFT_GUESS.search(prompt or "")
    if guess:
        guessed = guess.group(1).lower() == "yes"
        analysis.append(f"The student's first guess was {answer_word(guessed)}"
                        + (", which the facts support." if guessed == gold
                           else ", but the facts point the other way."))
        if _DRAFT_QUESTIONS.search(prompt or ""):
            analysis.append("Asking clarifying sub-questions first is the right approach.")
    analysis.append(f"The question does not rest on a single fact: it breaks into {count}, "
                    f"and answering each with a known fact settles it.")
    if not guess:
        analysis.append("The steps below answer them in order and then combine the answers.")

    numbered = "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    return (
        "## Teaching Analysis\n" + " ".join(analysis[:3]) + "\n\n"
        "## Step-by-Step Reasoning\n" + numbered + "\n\n"
        "## Final Assessment\n"
        "Putting these steps together answers the question.\n"
        f"Based on this analysis, the answer is: **{answer_word(gold).upper()}**"
    )


class GoldTeacher(Teacher):
    """Offline, deterministic, free; not cached (it is instant). Counts whitespace tokens."""

    backend = "gold"
    uses_cache = False

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher"):
        super().__init__(settings, cache_path, role)
        self.model = "gold"

    def key(self, request: Request) -> str:
        # The text depends on the record, not only on the prompt: two records that share a
        # question must not share a response.
        record = {k: request.record.get(k) for k in ("qid", "answer", "facts", "decomposition")}
        return cache_key(self.backend, json.dumps(record, sort_keys=True, ensure_ascii=False),
                         request.prompt, self.sampling, request.sample_index)

    def _complete_uncached(self, items, record) -> None:
        # No call is made: latency is recorded as 0.0 so reruns write byte-identical outputs.
        for key, request in items:
            text = gold_response(request.record, request.prompt)
            record(key, self._completion(text, len(request.prompt.split()), len(text.split()), 0.0,
                                         0.0, finish_reason="stop"))


# --- openai: any OpenAI-compatible API ---------------------------------------------------------

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


class OpenAITeacher(Teacher):
    backend = "openai"
    paid = True

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher"):
        api_key = env_setting("OPENAI_API_KEY")
        if not api_key:
            raise InputError(
                f"{role}.backend is openai but OPENAI_API_KEY is not set (environment or .env); "
                f"export it, put it in a git-ignored .env, or use {role}.backend "
                + ("gold (offline)" if role == "teacher" else "hf (a local model)")
            )
        super().__init__(settings, cache_path, role)
        self.__api_key = api_key  # name-mangled; never logged, cached or shown
        self.base_url = settings.get("base_url") or env_setting("OPENAI_BASE_URL") or None
        self.concurrency = int(settings.get("concurrency", 8))
        self.timeout_s = float(settings.get("timeout_s", 60))
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
            run = self._run or _Run(0, 0)
            why = {"fatal": "stopped: ", "breaker": f"stopped after {breaker} failures in a row: "}.get(
                state["stop"], "")
            raise TeacherRequestsFailed(
                f"{self.role}: {why}{len(failures)} request{'s' if len(failures) != 1 else ''} failed (first: {failures[0]}); {run.done} of "
                f"{run.total} requests are done and cached, {run.remaining} remaining; rerun to resume "
                f"from the cache ({self.role}.base_url, {self.role}.timeout_s={self.timeout_s:g}, "
                f"{self.role}.max_retries={self.max_retries})"
            )
        if state["cap"]:
            raise self._spend_cap_error(state["cap"])

    async def _call(self, client, request: Request) -> tuple[Completion, int]:
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


# --- hf: a local transformers model ------------------------------------------------------------

def generation_seed(qid: str, sample_index: int) -> int:
    digest = hashlib.sha256(f"{qid}\x00{int(sample_index)}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16)


class HFTeacher(Teacher):
    """A local causal LM. Batches of ``teacher.concurrency`` prompts (sorted by length, left
    padded); sampling at ``temperature`` (greedy at 0) is seeded per (qid, sample_index) with
    per-row generators (Gumbel-max), so a request's text does not depend on which requests
    share its batch. Tokens are counted; cost is 0 and spend caps do not apply."""

    backend = "hf"

    def __init__(self, settings: dict, cache_path=None, role: str = "teacher"):
        super().__init__(settings, cache_path, role)
        self.batch_size = max(1, int(settings.get("concurrency", 8)))
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, gguf_file = self.model, None
        candidate = Path(self.model).expanduser()
        if candidate.suffix == ".gguf":
            if not candidate.is_file():
                raise InputError(f"{self.role}.model: GGUF file not found: {candidate}")
            path, gguf_file = str(candidate.parent), candidate.name
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
            cuda = torch.cuda.is_available()
            dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=dtype)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{self.role}.model: cannot load {self.model!r} as a transformers causal LM: {first}") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        model.to("cuda" if cuda else "cpu").eval()
        self._model, self._tokenizer = model, tokenizer

    def _format(self, prompt: str) -> str:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        return prompt

    def _complete_uncached(self, items, record) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        self._load()
        model, tokenizer = self._model, self._tokenizer
        templated = bool(getattr(tokenizer, "chat_template", None))
        texts = [self._format(request.prompt) for _, request in items]
        lengths = [len(tokenizer(text, add_special_tokens=not templated)["input_ids"]) for text in texts]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        config = GenerationConfig(max_new_tokens=self.sampling["max_tokens"], do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=list(eos_ids))
        temperature = self.sampling["temperature"]
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin:begin + self.batch_size]
            start = time.perf_counter()
            encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                add_special_tokens=not templated).to(model.device)
            processors = LogitsProcessorList()
            if temperature > 0:
                seeds = [generation_seed(items[i][1].record.get("qid", ""), items[i][1].sample_index)
                         for i in batch]
                processors.append(_GumbelSampler(seeds, temperature))
            with torch.inference_mode():
                output = model.generate(**encoded, generation_config=config, logits_processor=processors)
            generated = output[:, encoded["input_ids"].shape[1]:].tolist()
            prompt_counts = encoded["attention_mask"].sum(dim=1).tolist()
            elapsed = (time.perf_counter() - start) / len(batch)
            for row, i in enumerate(batch):
                ids = generated[row]
                end = next((pos + 1 for pos, token in enumerate(ids) if token in eos_ids), len(ids))
                finish = "stop" if end < len(ids) or (ids and ids[end - 1] in eos_ids) else "length"
                text = tokenizer.decode(ids[:end], skip_special_tokens=True)
                record(items[i][0], self._completion(text, int(prompt_counts[row]), end, 0.0, elapsed, finish))


class _GumbelSampler:
    """Sampling as argmax(logits / T + Gumbel noise), the noise drawn from one generator per
    row: greedy decoding with this processor samples from softmax(logits / T), and each row's
    draws depend only on its own seed."""

    def __init__(self, seeds: list[int], temperature: float):
        import torch

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        import torch

        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-7)))
        return scores.float() / self.temperature + gumbel


# --- factory -----------------------------------------------------------------------------------

def make_teacher(settings: dict, cache_path: str | os.PathLike | None = None,
                 role: str = "teacher") -> Teacher:
    """The teacher for ``settings`` (the config's ``teacher`` section, defaults filled).

    ``cache_path`` defaults to ``settings["cache"]``; pass ``False`` for no persistent cache
    (tests). The gold teacher never caches (it is instant and deterministic). ``role`` names
    the client in messages, logs and spend-cap keys (``"judge"`` for :mod:`clarify.judge`).
    """
    backend = settings.get("backend", "gold")
    if cache_path is False:
        cache_path = ""
    if backend == "gold":
        return GoldTeacher(settings, cache_path, role)
    if backend == "openai":
        return OpenAITeacher(settings, cache_path, role)
    if backend == "hf":
        return HFTeacher(settings, cache_path, role)
    raise InputError(f"{role}.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
