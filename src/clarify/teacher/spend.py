"""Spend accounting and caps of a teacher or judge client.

:class:`SpendTracker` counts what one client object did in this run (its log line and the
judge's summary). The caps (``max_total_tokens``, ``max_cost_usd``; paid backends only) are
totals over the life of the cache file instead: every reply's tokens and cost are added to the
cache's ledger (:meth:`clarify.cache.CallCache.put`, same transaction as the reply), so reruns,
Snakemake's ``--retries`` and resumed runs all count. The caps are checked before each new
request; a cap can therefore be exceeded only by the requests already in flight (at most
``concurrency``). Without a cache file the ledger is this run's spend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError


@dataclass
class SpendTracker:
    """What this run (one client object) spent; cache hits cost nothing."""

    requests_made: int = 0       # real calls that returned a completion (each one paid once)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0             # HTTP retries taken by the client + retries of malformed bodies
    malformed: int = 0           # 200 responses whose body was not a chat completion
    failed: int = 0              # requests that gave up (retries exhausted, rejected)
    reasked: int = 0             # cached replies that failed to parse and were asked again

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, completion, retries: int = 0) -> None:
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


class SpendCaps:
    """Cap checks for :class:`clarify.teacher.core.Teacher` (reads its settings, cache, spend)."""

    def lifetime_spend(self) -> dict:
        """``{"requests", "tokens", "cost_usd"}`` spent over the cache file's life (this role)."""
        if self.cache is not None:
            return self.cache.spent(self.role)
        return {"requests": self.spend.requests_made, "tokens": self.spend.total_tokens,
                "cost_usd": self.spend.cost_usd}

    def cap_reached(self) -> list[str]:
        """The spend-cap keys reached over the cache's life (empty for free backends)."""
        if not self.paid:
            return []
        spent = self.lifetime_spend()
        reached = []
        cap_tokens = self.settings.get("max_total_tokens")
        if cap_tokens is not None and spent["tokens"] >= cap_tokens:
            reached.append(f"{self.role}.max_total_tokens")
        cap_cost = self.settings.get("max_cost_usd")
        if cap_cost is not None and self._price() is not None and spent["cost_usd"] >= cap_cost:
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

    @staticmethod
    def _charge(completion) -> dict:
        """What one reply adds to the ledger."""
        return {"requests": 1, "tokens": completion.prompt_tokens + completion.completion_tokens,
                "cost_usd": completion.cost_usd}

    def _spend_cap_error(self, reached: list[str]) -> SpendCapReached:
        spent = self.lifetime_spend()
        caps = self.settings
        where = f"the cache {self.cache.path}" if self.cache is not None else "this run (no cache file)"
        raise_what = " and ".join(f"{key} above {spent['tokens'] if key.endswith('tokens') else round(spent['cost_usd'], 4)}"
                                  for key in reached)
        return SpendCapReached(
            f"{self.role} spend cap reached ({' and '.join(reached)}): {where} has spent "
            f"{spent['tokens']} of max_total_tokens {caps.get('max_total_tokens')} tokens and "
            f"${spent['cost_usd']:.4f} of max_cost_usd {caps.get('max_cost_usd')} over its life "
            f"(every run and retry; this run: {self.spend.total_tokens} tokens, ${self.spend.cost_usd:.4f} "
            f"on {self.spend.requests_made} requests); {self.progress_note()}. To go on, raise "
            f"{raise_what} in the config and rerun: cached calls are not paid again"
        )
