"""The shared teacher machinery: requests, completions, the cache, de-duplication, progress.

Every backend (:mod:`clarify.teacher.gold`, ``.openai``, ``.hf``) subclasses :class:`Teacher`
and implements only :meth:`Teacher._complete_uncached`, calling ``record(key, completion)``
for each request as soon as its completion exists. ``record`` commits the reply to the SQLite
cache and adds its tokens and cost to the cache's spend ledger in the same transaction, so a
process killed at any point neither loses a reply it received nor forgets what it paid.

A completion is built once, in its canonical form (:meth:`Teacher._completion`: latency
rounded to :data:`LATENCY_DECIMALS`), and the cache stores exactly that form, so a harvest
served from the cache writes the same bytes as the run that made the calls.

A cached reply that failed to parse is not final for a backend that may answer differently
when asked again (``deterministic = False``, the API backend): the next run asks again for
exactly those requests, and the new reply replaces the old one (both were paid and counted).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from ..cache import CallCache, cache_key
from ..errors import InputError
from ..parsing import parse_teacher
from .spend import SpendCaps, SpendTracker

log = logging.getLogger("clarify.teacher")

LATENCY_DECIMALS = 4


@dataclass(frozen=True)
class Request:
    """One teacher call: the record it is about, the full prompt, and which sample it is."""

    record: dict
    prompt: str
    sample_index: int
    kind: str = "teach"          # "teach" | "rationalize" | "judge"
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


class TeacherRequestsFailed(InputError):
    """Some requests failed for good (retries exhausted, rejected); the rest are cached."""


class _Run:
    """The distinct requests of one complete_many call, for progress and messages."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.done: set[str] = set()


class Teacher(SpendCaps):
    """Base class of every backend. Class attributes say what a backend needs and is:

    * ``needs_gpu``: its rule asks the scheduler for a GPU;
    * ``needs_api_key``: it reads ``OPENAI_API_KEY`` (the preflight checks it is set);
    * ``can_judge``: it can serve as the judge (the gold teacher cannot);
    * ``deterministic``: asking again gives the same reply, so an invalid cached reply is final;
    * ``paid``: spend caps apply; ``uses_cache``: replies go through the SQLite cache.
    """

    backend = "base"
    needs_gpu = False
    needs_api_key = False
    can_judge = True
    deterministic = True
    uses_cache = True
    paid = False

    def __init__(self, settings: dict, cache_path: str | os.PathLike | None = None, role: str = "teacher",
                 reask_invalid: bool | None = None):
        self.role = str(role)  # names the client in messages and config keys ("teacher", "judge")
        self.settings = dict(settings)
        self.model = str(settings.get("model", ""))
        self.sampling = {"temperature": float(settings.get("temperature", 0.0)),
                         "max_tokens": int(settings.get("max_tokens", 400))}
        self.reask_invalid = (not self.deterministic) if reask_invalid is None else bool(reask_invalid)
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
        self._run = run = _Run([])
        first: dict[str, int] = {}  # key -> the index of its first request
        for index, request in enumerate(requests):
            key = self.key(request)
            if key in first:  # identical requests in one batch are sent once
                served = results[first[key]]
                if served is not None:
                    results[index] = dataclasses.replace(served, steps=list(served.steps))
                    self.spend.cache_hits += 1
                else:
                    pending[key].append(index)
                continue
            first[key] = index
            run.keys.append(key)
            completion = self._cached(key)
            if completion is not None:
                results[index] = completion
                run.done.add(key)
                self.spend.cache_hits += 1
            else:
                pending[key] = [index]
        bar = tqdm(total=len(requests), initial=len(requests) - sum(map(len, pending.values())),
                   disable=not progress, unit="req", desc=f"{self.role}[{self.backend}]", dynamic_ncols=True)

        def record(key: str, completion: Completion, retries: int = 0, cache: bool = True) -> None:
            indices = pending[key]
            stored = cache and completion.error is None and self.cache is not None
            if stored:
                self.cache.put(key, self._to_value(completion), scope=self.role,
                               spend=self._charge(completion))
            if completion.error is None:
                self.spend.add(completion, retries)
            else:
                self.spend.retries += retries
            if completion.error is None and (stored or self.cache is None) and self._final(completion):
                run.done.add(key)
            results[indices[0]] = completion
            for duplicate in indices[1:]:
                results[duplicate] = dataclasses.replace(completion, cached=True, steps=list(completion.steps))
                if completion.error is None:
                    self.spend.cache_hits += 1
            bar.update(len(indices))

        try:
            if pending:
                self._complete_uncached([(key, requests[indices[0]]) for key, indices in pending.items()],
                                        record)
        finally:
            bar.close()
            log.info("%s[%s] %s: %d requests, %d cached, %d made (%d retries, %d malformed, %d asked "
                     "again after an invalid reply), %d tokens, $%.4f this run", self.role, self.backend,
                     self.model, len(requests), self.spend.cache_hits, self.spend.requests_made,
                     self.spend.retries, self.spend.malformed, self.spend.reasked, self.spend.total_tokens,
                     self.spend.cost_usd)
        missing = [index for index, completion in enumerate(results) if completion is None]
        if missing:  # pragma: no cover - a backend must record every request or raise
            raise RuntimeError(f"{self.role}[{self.backend}] returned no completion for {len(missing)} requests")
        return results  # type: ignore[return-value]

    def progress_note(self) -> str:
        """``"N of M requests are done, R remaining ..."`` for the current batch: M distinct
        requests, N those with a final reply (in the cache, when there is one)."""
        run = self._run or _Run([])
        done, total = len(run.done), len(run.keys)
        where = (f"the done ones are cached in {self.cache.path}" if self.cache is not None
                 else "no cache file: a rerun repeats them")
        return f"{done} of {total} requests are done, {total - done} remaining ({where})"

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
        """The one constructor of completions: its numbers are already in their canonical form."""
        final, steps = parse_teacher(text)
        return Completion(text=text, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens),
                          cost_usd=float(cost_usd), latency_s=round(float(latency_s), LATENCY_DECIMALS),
                          cached=cached, backend=self.backend, model=self.model, final=final, steps=steps,
                          parse_ok=final is not None and bool(steps), finish_reason=finish_reason, error=error)

    @staticmethod
    def _to_value(completion: Completion) -> dict:
        """What the cache stores: the raw call result (parsing is redone on load)."""
        return {"text": completion.text, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens, "cost_usd": completion.cost_usd,
                "latency_s": completion.latency_s, "backend": completion.backend,
                "model": completion.model, "finish_reason": completion.finish_reason}

    def _from_value(self, value: dict, cached: bool) -> Completion:
        completion = self._completion(value.get("text", ""), value.get("prompt_tokens", 0),
                                      value.get("completion_tokens", 0), value.get("cost_usd", 0.0),
                                      value.get("latency_s", 0.0), value.get("finish_reason"), cached=cached)
        completion.backend = value.get("backend", self.backend)
        completion.model = value.get("model", self.model)
        return completion

    def _final(self, completion: Completion) -> bool:
        """Whether a reply stands; an invalid one does not where asking again may help."""
        return completion.parse_ok or not self.reask_invalid

    def _cached(self, key: str) -> Completion | None:
        value = self.cache.get(key) if self.cache is not None else None
        if value is None:
            return None
        completion = self._from_value(value, cached=True)
        if self._final(completion):
            return completion
        self.spend.reasked += 1
        return None
