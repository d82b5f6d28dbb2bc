"""A throwaway one-node SLURM cluster for tests: munged + slurmctld + slurmd, started by hand.

Made for a CI machine where the tests run as root without systemd (Debian packages
``slurm-wlm`` and ``munge``). Everything the daemons write (munge key and socket, slurm.conf,
state, spool, pid and log files) lives in one fresh directory under the system temp dir; the
ports are free ones picked at start; the cluster name is unique. Nothing under /etc or /var is
read or changed, and clients find the cluster through ``SLURM_CONF`` (see :attr:`env`).

Usage::

    ensure_slurm_installed()              # apt-get installs the packages if they are missing
    with SlurmCluster() as cluster:       # daemons up, node idle
        subprocess.run(["sbatch", ...], env=cluster.env, timeout=30)
    # every process started here (and every job process, found by a marker variable in its
    # environment) is gone, verified, and the directory is removed

Every daemon runs in the foreground as a child of this process, in its own session; stopping
cancels the jobs, then sends SIGTERM (SIGKILL after a grace period) to each PID and checks it
is gone. Should this process die without stopping them (SIGKILL), the kernel sends each daemon
SIGTERM (parent-death signal, set with util-linux ``setpriv``). A start that fails (a port
taken in the meantime) is cleaned up and retried in a fresh directory.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Binaries the cluster needs: the daemons and the clients the Snakemake SLURM plugin calls.
REQUIRED_BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "slurmstepd",
                     "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
#: Client commands wrapped in ``<root>/bin`` so that they find this cluster's slurm.conf even
#: where SLURM_* variables are stripped from the environment (the jobstep plugin's nested srun).
CLIENTS = ("srun", "sbatch", "squeue", "scontrol", "sinfo", "scancel", "sacct", "sacctmgr", "sshare",
           "salloc", "sstat")
#: Debian packages that provide them.
DEBIAN_PACKAGES = ("slurm-wlm", "munge")
#: Environment variable that marks every process of one cluster (daemons, and through them
#: every job process), so that stopping can verify nothing is left behind.
MARKER = "CLARIFY_TEST_SLURM_CLUSTER"

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _setpriv_with_pdeathsig() -> str | None:
    setpriv = shutil.which("setpriv", path=_SBIN_PATH)
    if setpriv is None:
        return None
    try:
        usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return setpriv if "--pdeathsig" in usage else None


_PDEATHSIG = _setpriv_with_pdeathsig()


class SlurmUnavailable(RuntimeError):
    """The SLURM/munge packages are missing and could not be installed."""


class SlurmClusterError(RuntimeError):
    """The cluster did not come up (the message carries the daemons' log tails)."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}{os.pathsep}{_SBIN_PATH}")


def missing_binaries() -> list[str]:
    return [name for name in REQUIRED_BINARIES if _which(name) is None]


def ensure_slurm_installed(timeout_s: int = 300) -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get if any binary is missing.

    Raises :class:`SlurmUnavailable` (with apt's output) when that is impossible; never skips.
    """
    missing = missing_binaries()
    if not missing:
        return
    apt = _which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise SlurmUnavailable(
            f"SLURM packages cannot be installed: missing {', '.join(missing)}; installing "
            f"{' '.join(DEBIAN_PACKAGES)} needs apt-get and root "
            f"(apt-get: {apt or 'not found'}, uid {os.geteuid()})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")
    steps = [
        [apt, "-q", "-o", "DPkg::Lock::Timeout=120", "update"],
        [apt, "-q", "-y", "-o", "DPkg::Lock::Timeout=120", "install", "--no-install-recommends",
         *DEBIAN_PACKAGES],
    ]
    deadline = time.monotonic() + timeout_s
    for cmd in steps:
        left = max(1, int(deadline - time.monotonic()))
        try:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"SLURM packages cannot be installed: `{' '.join(cmd)}` "
                                   f"timed out after {timeout_s} s") from None
        if result.returncode != 0:
            raise SlurmUnavailable(
                f"SLURM packages cannot be installed: `{' '.join(cmd)}` exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"SLURM packages installed but binaries still missing: {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


#: Run detached (own session, no marker in its environment) next to every cluster: when the
#: process that started the cluster is gone without stopping it (SIGKILL, a CI timeout), it
#: kills every process of the cluster (daemons, slurmstepd, jobs) and removes its directory.
#: stop() ends it by PID. It gives up after ``lifetime`` seconds in any case.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
parent, marker, root, lifetime = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], float(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
def marked():
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids
end = time.monotonic() + lifetime
while time.monotonic() < end:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
else:
    sys.exit(0)
for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
    for pid in marked():
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    time.sleep(2)
shutil.rmtree(root, ignore_errors=True)
"""


def _marked_pids(marker_value: str) -> list[int]:
    """PIDs of live processes whose environment carries ``MARKER=marker_value``."""
    needle = f"{MARKER}={marker_value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


class SlurmCluster:
    """One-node SLURM cluster in a temp dir; use as a context manager (or start()/stop())."""

    def __init__(self, start_timeout_s: float = 60.0, keep_dir_on_failure: bool = False,
                 watchdog_lifetime_s: float = 6 * 3600):
        self.start_timeout_s = start_timeout_s
        self.watchdog_lifetime_s = watchdog_lifetime_s
        self.watchdog: subprocess.Popen | None = None
        self.keep_dir_on_failure = keep_dir_on_failure
        self.name = "t" + secrets.token_hex(5)  # ClusterName: lower case, unique per cluster
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self.failed = False

    # ----------------------------------------------------------------- public
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus what clients (sbatch, squeue, the plugin, jobs) need to find the cluster.

        SLURM_CONF names this cluster's slurm.conf, and PATH starts with wrappers of the client
        commands that set it again: on a real cluster the config is at the default location,
        and the SLURM jobstep plugin drops SLURM_* variables before its nested ``srun``.
        """
        path = os.environ.get("PATH", "")
        return dict(os.environ, SLURM_CONF=str(self.conf), **{MARKER: self.name},
                    PATH=os.pathsep.join(p for p in (str(self.bin_dir), path, _SBIN_PATH) if p))

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (squeue, scontrol, ...) against this cluster."""
        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise SlurmClusterError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Every job slurmctld still remembers (MinJobAge is long): id -> (name, state)."""
        out = self.run("squeue", "--noheader", "--states=all", "--format=%i|%j|%T").stdout
        jobs = {}
        for line in out.splitlines():
            if line.strip():
                job_id, name, state = line.strip().split("|", 2)
                jobs[job_id] = (name, state)
        return jobs

    def log_tails(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{_tail(path, chars)}" for name, path in self._logs.items())

    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        self.stop()

    # ------------------------------------------------------------------ start
    def start(self, attempts: int = 3) -> None:
        """Start munged, slurmctld and slurmd and wait for an idle node.

        A failed start (a port taken between picking and binding, say) is cleaned up and tried
        again in a fresh directory with fresh ports; the last error carries the daemons' logs.
        """
        missing = missing_binaries()
        if missing:
            raise SlurmUnavailable(f"SLURM binaries missing: {', '.join(missing)} (ensure_slurm_installed())")
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except SlurmClusterError as exc:
                if attempt == attempts:
                    raise SlurmClusterError(f"SLURM cluster did not start ({attempts} attempts): {exc}") from None

    def _start_once(self) -> None:
        self.procs, self._logs, self.failed = {}, {}, False
        # A short path: the munge socket path must fit in sun_path (108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix=f"slurm-{self.name}-"))
        try:
            self._start_watchdog()
            self._write_files()
            self._start_munged()
            self._start_daemon("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait(self._controller_up, "slurmctld answers scontrol ping")
            self._start_daemon("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
            self._wait(self._node_idle, f"node {self.node} idle in sinfo")
        except BaseException as exc:
            self.failed = True
            logs = self.log_tails()
            try:
                self.stop()
            except SlurmClusterError as stop_error:
                logs += f"\n(stopping after the failed start: {stop_error})"
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: cleaned up, re-raised
                raise
            raise SlurmClusterError(f"{exc}\n{logs}") from None

    def _controller_up(self) -> bool:
        result = self.run("scontrol", "ping", timeout=10, check=False)
        return result.returncode == 0 and "is UP" in result.stdout

    def _node_idle(self) -> bool:
        result = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", timeout=10, check=False)
        return result.returncode == 0 and f"{self.node} idle" in result.stdout

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmClusterError(f"{name} exited with {proc.returncode} while waiting for: {what}")
            try:
                if ready():
                    return
            except (subprocess.TimeoutExpired, OSError):
                pass
            time.sleep(0.2)
        raise SlurmClusterError(f"timed out after {self.start_timeout_s} s waiting for: {what}")

    def _hardware(self) -> str:
        """The node line of ``slurmd -C`` without the NodeName and UpTime."""
        result = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("NodeName=")), "")
        fields = [f for f in line.split() if f.split("=", 1)[0] in
                  ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")]
        if not any(f.startswith("CPUs=") for f in fields):
            fields = [f"CPUs={os.cpu_count() or 1}"]
        return " ".join(fields)

    def _write_files(self) -> None:
        root = self.root
        os.chmod(root, 0o755)  # munged wants execute permission for all on the socket's dirs
        for sub in ("etc", "state", "spool", "log", "run", "munge-sock"):  # bin/: see env
            (root / sub).mkdir(mode=0o755)
        key_dir = root / "munge-key"
        key_dir.mkdir(mode=0o700)
        key = key_dir / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(1024))
        self.munge_socket = root / "munge-sock" / "munge.socket"
        self.host = socket.gethostname().split(".")[0]
        self.node = "n" + secrets.token_hex(3)
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        (root / "etc" / "plugstack.conf").write_text("")
        (root / "bin").mkdir(mode=0o755)
        for client in CLIENTS:
            real = shutil.which(client, path=f"{os.environ.get('PATH', '')}{os.pathsep}{_SBIN_PATH}")
            if real:
                wrapper = root / "bin" / client
                wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{real}" "$@"\n')
                wrapper.chmod(0o755)
        self.conf.write_text("\n".join([
            f"ClusterName={self.name}",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            f"PlugStackConfig={root / 'etc' / 'plugstack.conf'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",  # start jobs at once
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "ReturnToService=2",
            # squeue is the status command (no accounting): keep finished jobs visible for 10 min.
            "MinJobAge=3600",
            "KillWait=5",
            "InactiveLimit=0",
            "MailProg=/bin/true",
            # The node is described by slurm.conf, not probed: a small mismatch must not drain it.
            "SlurmdParameters=config_overrides",
            f"NodeName={self.node} NodeHostname={self.host} NodeAddr=127.0.0.1 {self._hardware()} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _popen(self, name: str, cmd: list[str]) -> subprocess.Popen:
        # If this process dies without stop() (SIGKILL, a CI timeout), the kernel sends the
        # daemon SIGTERM: setpriv (util-linux, always on Debian) sets that, then execs it.
        if _PDEATHSIG:
            cmd = [_PDEATHSIG, "--pdeathsig", "TERM", "--", *cmd]
        log = self.root / "log" / f"{name}.out"
        self._logs[name] = log
        with open(log, "wb") as handle:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.root, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _start_munged(self) -> None:
        root = self.root
        self._popen("munged", [_which("munged"), "--foreground", "--force",
                               f"--key-file={root / 'munge-key' / 'munge.key'}",
                               f"--socket={self.munge_socket}",
                               f"--pid-file={root / 'run' / 'munged.pid'}",
                               f"--seed-file={root / 'run' / 'munged.seed'}",
                               f"--log-file={root / 'log' / 'munged.log'}"])

        def munge_works() -> bool:
            if not self.munge_socket.exists():
                return False
            cred = subprocess.run([_which("munge"), "-n", "-S", str(self.munge_socket)], capture_output=True,
                                  timeout=10, stdin=subprocess.DEVNULL)
            if cred.returncode != 0:
                return False
            return subprocess.run([_which("unmunge"), "-S", str(self.munge_socket)], input=cred.stdout,
                                  capture_output=True, timeout=10).returncode == 0

        self._wait(munge_works, "munged encodes and decodes a credential")

    def _start_watchdog(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != MARKER}
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), f"{MARKER}={self.name}", str(self.root),
             str(self.watchdog_lifetime_s)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)

    def _start_daemon(self, name: str, cmd: list[str]) -> None:
        self._logs[f"{name}.log"] = self.root / "log" / f"{name}.log"
        self._popen(name, cmd)

    # ------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Cancel every job, stop every daemon by PID, verify nothing is left, remove the dir."""
        if self.root is None:
            return
        errors = []
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--partition=debug", timeout=15, check=False)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                        state in ("RUNNING", "PENDING", "COMPLETING", "CONFIGURING")
                        for _, state in self.jobs().values()):
                    time.sleep(0.3)
            except (subprocess.TimeoutExpired, SlurmClusterError, OSError) as exc:
                errors.append(f"cancelling jobs: {exc}")
        # Daemons in reverse start order: slurmd, slurmctld, munged.
        for name in reversed(list(self.procs)):
            if not self._terminate(self.procs[name]):
                errors.append(f"{name} (pid {self.procs[name].pid}) did not exit")
        # Anything else of this cluster (slurmstepd, job processes) carries the marker.
        for _ in range(3):
            left = _marked_pids(self.name)
            if not left:
                break
            for pid in left:
                self._kill_pid(pid, signal.SIGTERM)
            time.sleep(1)
            for pid in _marked_pids(self.name):
                self._kill_pid(pid, signal.SIGKILL)
            time.sleep(0.5)
        left = _marked_pids(self.name)
        if left:
            errors.append(f"processes of cluster {self.name} still alive: {left}")
        if not (self.failed and self.keep_dir_on_failure):
            shutil.rmtree(self.root, ignore_errors=True)
        self.procs.clear()
        if self.watchdog is not None and not self._terminate(self.watchdog, grace_s=5):
            errors.append(f"watchdog (pid {self.watchdog.pid}) did not exit")
        self.watchdog = None
        if errors:
            raise SlurmClusterError("; ".join(errors))

    @staticmethod
    def _kill_pid(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _terminate(proc: subprocess.Popen, grace_s: float = 10.0) -> bool:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    return False
        try:
            os.kill(proc.pid, 0)  # reaped by wait(): the PID must be gone
        except ProcessLookupError:
            return True
        return False


def job_ids_in(text: str) -> list[str]:
    """SLURM job ids the Snakemake SLURM plugin reports submitting in its log output."""
    return re.findall(r"submitted with SLURM jobid (\d+)", text)
