"""A persistent SQLite cache of paid or slow model calls (teacher, judge).

DESIGN section 8: an interrupted run resumes, a rerun costs nothing, and the cache survives a
killed process without corruption. The database runs in WAL journal mode and every
:meth:`CallCache.put` is committed in its own transaction, so a process killed at any point
(SIGKILL included) leaves a readable cache that holds every call completed before the kill.
``synchronous=NORMAL`` is enough for that: a committed WAL transaction survives the death of
the process; only a power cut can lose the last few commits (and never corrupts the file).

A second table, ``spend``, is a ledger of what the stored calls cost (requests, tokens,
dollars) per scope (the client's role: ``teacher``, ``judge``), updated in the same transaction
as each reply: spend caps are totals over the file's life, across runs and retries.

Keys are the sha256 of a canonical JSON of everything that determines a call's result
(:func:`cache_key`); values are JSON objects. Never put credentials in either.

One :class:`CallCache` may be shared by the coroutines of one event loop or by threads of one
process: every database operation holds a lock, and each is a single short statement. Several
processes may open the same file (SQLite locks it; writers wait up to ``busy_timeout_s``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    scope TEXT PRIMARY KEY,
    requests INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL
)
"""

_ADD_SPEND = """
INSERT INTO spend (scope, requests, tokens, cost_usd) VALUES (?, ?, ?, ?)
ON CONFLICT(scope) DO UPDATE SET requests = requests + excluded.requests,
    tokens = tokens + excluded.tokens, cost_usd = cost_usd + excluded.cost_usd
"""


def canonical_json(obj) -> str:
    """JSON with sorted keys and no optional whitespace: equal objects give equal text."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def cache_key(backend: str, model: str, prompt: str, sampling: dict, sample_index: int) -> str:
    """The cache key of one call: sha256 (hex) of a canonical JSON of its inputs.

    ``sampling`` holds the settings that change the output (e.g. ``temperature``,
    ``max_tokens``). Numbers are compared as JSON text, so pass them with stable types
    (``float(temperature)``, ``int(max_tokens)``): ``0`` and ``0.0`` are different keys.
    """
    payload = {
        "backend": str(backend),
        "model": str(model),
        "prompt": prompt,
        "sampling": sampling,
        "sample_index": int(sample_index),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class CallCache:
    """A key -> JSON-object store in one SQLite file (created with its parent folders)."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit; each put is its own explicit transaction.
        self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s,
                                     isolation_level=None, check_same_thread=False)
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network file system
                raise sqlite3.OperationalError(f"cannot use WAL journal mode for {self.path} (got {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(SCHEMA)

    # --- mapping-like API ---------------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        """The stored value for ``key``, or None."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict, scope: str | None = None, spend: dict | None = None) -> None:
        """Store ``value`` under ``key`` (replacing any old value), committed before returning.

        With ``spend`` (``{"requests", "tokens", "cost_usd"}``), add it to the ledger of
        ``scope`` in the same transaction: a reply is never stored without its cost, nor
        counted without being stored.
        """
        text = canonical_json(value)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO calls (key, value, created) VALUES (?, ?, ?)",
                    (key, text, time.time()),
                )
                if spend is not None:
                    self._conn.execute(_ADD_SPEND, (str(scope), int(spend.get("requests", 0)),
                                                    int(spend.get("tokens", 0)), float(spend.get("cost_usd", 0.0))))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def spent(self, scope: str) -> dict:
        """``{"requests", "tokens", "cost_usd"}`` added to ``scope``'s ledger over the file's life."""
        with self._lock:
            row = self._conn.execute("SELECT requests, tokens, cost_usd FROM spend WHERE scope = ?",
                                     (str(scope),)).fetchone()
        requests, tokens, cost = row if row is not None else (0, 0, 0.0)
        return {"requests": int(requests), "tokens": int(tokens), "cost_usd": float(cost)}

    def __contains__(self, key: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM calls WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def keys(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT key FROM calls ORDER BY created, key")]

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "CallCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CallCache({str(self.path)!r})"
