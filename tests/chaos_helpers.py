"""Pieces of the chaos test (tests/test_chaos.py): a gated fake API server, a killable Snakemake run.

The gate makes "no paid request that reached the client is repeated" checkable from the
server's request log alone. A kill -9 can land while replies are on the wire; a reply the
server sent but the client never stored is not one that "reached the client", and asking for it
again is right. So before a kill during the harvest the server stops paying (new requests wait
at the gate), the replies already paid finish and land in the client's SQLite cache, and only
then the process group dies; the requests waiting at the gate are hung up on unpaid (as a
kill's closed connections are). Every paid reply has then reached the cache, and any second
payment for the same request is a real repeat.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from fake_openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


class GatedOpenAIServer(FakeOpenAIServer):
    """The fake server with a gate in front of payment: :meth:`hold` stops replies, :meth:`release` drops the held."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, slow_s=0.0, **kwargs)  # a dropped request hangs up at once
        self._open = threading.Event()
        self._open.set()
        self._generation = 0
        self.active = 0    # requests being handled
        self.waiting = 0   # of those, waiting at the closed gate
        self.dropped = 0

    def _handle(self, handler) -> None:
        with self._lock:
            self.active += 1
        try:
            super()._handle(handler)
        finally:
            with self._lock:
                self.active -= 1

    def _fault(self, key):
        generation = self._generation
        if not self._open.is_set():
            with self._lock:
                self.waiting += 1
            self._open.wait()
            with self._lock:
                self.waiting -= 1
            if self._generation != generation:  # released by a drop: the client that asked is dead
                with self._lock:
                    self.dropped += 1
                return "slow"  # recorded unpaid; the connection is closed without a reply
        return super()._fault(key)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        """Open the gate; the requests that waited at it are dropped unpaid."""
        self._generation += 1
        self._open.set()

    def in_flight(self) -> int:
        """Requests past the gate whose handling has not finished (they may still be paid)."""
        with self._lock:
            return self.active - self.waiting

    def reset(self) -> None:
        """Forget the request log and fault draws (between the reference and the chaos run)."""
        with self._lock:
            self.records.clear()
            self._attempts.clear()
            self.dropped = 0


def cached_teacher_requests(cache_file: Path) -> int:
    """Paid replies the client has stored: the teacher's row of the cache's spend ledger (0 before any)."""
    if not cache_file.exists():
        return 0
    with sqlite3.connect(f"file:{cache_file}?mode=ro", uri=True, timeout=5) as conn:
        try:
            row = conn.execute("SELECT requests FROM spend WHERE scope = 'teacher'").fetchone()
        except sqlite3.OperationalError:  # the tables are not made yet
            return 0
    return int(row[0]) if row else 0


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(REPO / "config.yaml"), str(workdir / "test.yaml"), *args]


def snakemake_env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                PYTHONHASHSEED="0")


def run_snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(snakemake_command(workdir, *args), cwd=workdir, env=snakemake_env(),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


class KillableRun:
    """Snakemake in its own process group (``start_new_session``), so kill -9 reaches every job."""

    def __init__(self, workdir: Path, *args: str):
        self.workdir = workdir
        self.log = open(workdir / f"snakemake-{time.time_ns()}.out", "w")
        self.proc = subprocess.Popen(snakemake_command(workdir, *args), cwd=workdir, env=snakemake_env(),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group; returns once every member is gone."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("processes of the killed group outlived SIGKILL")
        self.log.close()

    def wait_until(self, condition, what: str, timeout: float = 300, poll: float = 0.05) -> None:
        """Poll ``condition`` until true; fail if Snakemake exits or the time runs out first."""
        deadline = time.time() + timeout
        while not condition():
            if not self.running():
                self.log.flush()
                tail = Path(self.log.name).read_text()[-3000:]
                raise AssertionError(f"snakemake exited ({self.proc.returncode}) before {what}:\n{tail}")
            if time.time() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(poll)


def complete_checkpoint(directory: Path) -> bool:
    """A ``checkpoint-N`` under ``directory`` whose trainer_state.json (written last) exists."""
    return directory.is_dir() and any((c / "trainer_state.json").is_file() for c in directory.glob("checkpoint-*"))
