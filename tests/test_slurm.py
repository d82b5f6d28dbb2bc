"""The tiny-model DAG on a real one-node SLURM cluster, through profiles/slurm (docs/scaling.md).

The test installs the Debian packages ``slurm-wlm`` and ``munge`` when they are missing (root +
apt-get, as on CI) and fails with apt's message when it cannot: it never skips. It starts
munged, slurmctld and slurmd by hand in a temp dir (tests/slurm_cluster.py), runs
``results/report.md`` locally (or takes the e2e tests' run, if conftest.py shares it as
``finished_run``), then the first half of the same DAG again with ``--workflow-profile
profiles/slurm`` (data, student, drafts, harvest, corpora, Phase A and B training, a score: every
kind of job and resource request the DAG has, in about a quarter of its jobs, which keeps CI under
20 minutes), and checks that every job of the plan was a SLURM job that completed and that every
artifact it made equals the local run's. The cluster is stopped by PID afterwards, pass or fail; the test errors if any of
its processes is left.

The cluster has no accounting database (slurmdbd), so the run adds
``--slurm-status-command squeue`` (the default, sacct, would never see a job finish there) and a
1 s first status check.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import SlurmCluster, ensure_slurm_installed
from test_workflow import write_config

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"
PROFILE = REPO / "profiles" / "slurm"
TARGET = "results/report.md"
#: What the SLURM run makes: the DAG's first half, a model job of each kind (training, scoring).
SLURM_TARGETS = ["models/cot_phaseB", "results/scores/phaseA/direct.parquet"]
RUN_TIMEOUT_S = 1500  # per snakemake call: a hang guard (the SLURM run of the tiny DAG took 12+ min on 2 cores)

#: On top of the profile: a cluster without slurmdbd, and seconds-long jobs.
TEST_CLUSTER_FLAGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--latency-wait", "5",
    "--jobs", "4",
    "--retries", "0",  # fail fast: the profile's retry would only double a failure's time here
]
#: Top-level entries of a workdir that are not artifacts: logs and benchmarks, Snakemake's own
#: state (with the SLURM logs), the test config, persistent API caches.
NOT_ARTIFACTS = {"logs", ".snakemake", "test.yaml", "slurm.yaml", "cache"}
#: Measured durations are not results: JSON keys and table columns that hold them ...
TIMING_KEY = re.compile(r"(latency|wall_time|elapsed|duration|runtime|_time)(_s|_ms|_sec|_seconds)?$|per_second$")
#: ... and durations or clock times written into text (the report's "| cpu | 4 s |").
TIMING_TEXT = re.compile(rb"\b\d+(\.\d+)?\s?(ms|s|sec|min|h)\b|\b\d+:\d\d(:\d\d)?(\.\d+)?\b")

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm_cluster():
    ensure_slurm_installed()  # raises SlurmUnavailable (apt's output) rather than skipping
    with SlurmCluster() as cluster:  # on exit: cancel jobs, kill daemons by PID, verify, rm dir
        yield cluster


def snakemake_cmd(workdir: Path, *args: str, configfiles: tuple[str, ...] = ("test.yaml",)) -> list[str]:
    return ["timeout", "-k", "15", str(RUN_TIMEOUT_S), str(SNAKEMAKE), "-s", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(REPO / "config.yaml"),
            *(str(workdir / name) for name in configfiles), *args]


def run_env(env: dict[str, str]) -> dict[str, str]:
    """The venv first on PATH: slurmd starts jobs with the submitting environment (--export=ALL).

    PYTHONHASHSEED is fixed: whatever a job writes in set order is then the same in both runs.
    """
    return dict(env, PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONHASHSEED="0")


def stop_process_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # Snakemake cancels its SLURM jobs on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def plan(output: str) -> Counter:
    """Job counts per rule from the first 'Job stats' table of a run's log."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return Counter({name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)
                    if name != "total"})


def artifacts(workdir: Path) -> set[Path]:
    return {path.relative_to(workdir) for path in workdir.rglob("*")
            if path.is_file() and path.relative_to(workdir).parts[0] not in NOT_ARTIFACTS
            and path.name != ".snakemake_timestamp"}


def without_timings(value):
    """JSON less measured durations; PEFT's target_modules (a set, saved in hash order) sorted."""
    if isinstance(value, dict):
        return {k: sorted(v) if k == "target_modules" and isinstance(v, list) else without_timings(v)
                for k, v in value.items() if not TIMING_KEY.search(str(k))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def comparable(path: Path, workdir: Path):
    """What must be equal between the runs: the content, less measured durations."""
    data = path.read_bytes().replace(bytes(workdir), b"<workdir>")
    if path.suffix in (".parquet", ".csv", ".tsv"):
        try:
            frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                     else pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ","))
        except ValueError:  # not a table after all (an empty csv, say): compare the bytes
            return data
        return frame.drop(columns=[c for c in frame.columns if TIMING_KEY.search(str(c))])
    try:
        if path.suffix == ".json":
            return without_timings(json.loads(data))
        if path.suffix == ".jsonl":
            return [without_timings(json.loads(line)) for line in data.splitlines() if line.strip()]
    except ValueError:
        return data
    if path.suffix == ".md":  # the report's wall-time section is all measurements
        data = re.sub(rb"## Wall time per job\n.*?(?=\n## |\Z)", b"## Wall time per job\n<times>", data, flags=re.S)
    if path.suffix in (".md", ".txt", ".html"):
        return TIMING_TEXT.sub(b"<time>", data)
    return data


def differences(local: Path, remote: Path) -> list[str]:
    problems = []
    for rel in sorted(artifacts(local) & artifacts(remote)):
        a, b = comparable(local / rel, local), comparable(remote / rel, remote)
        if isinstance(a, pd.DataFrame):
            try:
                pd.testing.assert_frame_equal(a, b)
            except AssertionError as exc:
                problems.append(f"{rel}: {' '.join(str(exc).split())[:300]}")
        elif a != b:
            if isinstance(a, bytes):
                lines = zip(a.splitlines(), b.splitlines())
                first = next(((x, y) for x, y in lines if x != y), (a[:100], b[:100]))
                problems.append(f"{rel}: bytes differ, e.g. local {first[0][:150]!r} vs slurm {first[1][:150]!r}")
            else:
                problems.append(f"{rel}: content differs")
    return problems


def slurm_logs(text: str, rules: set[str]) -> str:
    """The tails of the SLURM job logs the run names, for the given rules (all if empty)."""
    chunks = []
    for path in sorted(set(re.findall(r"\(log: (\S+\.log)\)", text))):
        if Path(path).is_file() and (not rules or any(f"/rule_{rule}/" in path for rule in rules)):
            chunks.append(f"--- {path} ---\n{Path(path).read_text(errors='replace')[-1500:]}")
    return "\n".join(chunks)


@pytest.fixture
def local_run(request, tmp_path, tiny_model_dir, shared_data):
    """A finished local run of the tiny DAG, and how long it took (None: not run here).

    The e2e tests' own run when conftest.py shares it as the fixture ``finished_run`` (one DAG
    run less per test session); otherwise one made here with the e2e tests' config.
    """
    try:
        return request.getfixturevalue("finished_run"), None
    except pytest.FixtureLookupError:
        pass
    workdir = tmp_path / "local"
    workdir.mkdir()
    write_config(workdir, tiny_model_dir, shared_data)
    started = time.monotonic()
    result = subprocess.run(snakemake_cmd(workdir, "--cores", "2", TARGET), cwd=workdir,
                            env=run_env(dict(os.environ)), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S + 30)
    assert result.returncode == 0, f"local run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return workdir, time.monotonic() - started


def test_tiny_dag_runs_on_slurm_and_matches_a_local_run(local_run, slurm_cluster, tmp_path):
    # The local reference comes first (a broken DAG fails there, plainly). Not alongside the
    # SLURM run: on 2 cores that slows its jobs past the plugin's status-check intervals.
    local, local_elapsed = local_run
    remote = tmp_path / "slurm"
    remote.mkdir()
    # The same config, plus gpu=0: the test node has no GPU (gpu=1 would ask sbatch --gpus=1).
    # The resources section is no rerun trigger and reaches no artifact.
    shutil.copyfile(local / "test.yaml", remote / "test.yaml")
    (remote / "slurm.yaml").write_text(yaml.safe_dump({"resources": {"gpu": 0}}))

    started = time.monotonic()
    run_log = tmp_path / "slurm-run.log"
    with open(run_log, "w") as out:
        proc = subprocess.Popen(
            snakemake_cmd(remote, "--workflow-profile", str(PROFILE), *TEST_CLUSTER_FLAGS, *SLURM_TARGETS,
                          configfiles=("test.yaml", "slurm.yaml")),
            cwd=remote, env=run_env(slurm_cluster.env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        returncode = proc.wait(timeout=RUN_TIMEOUT_S + 30)
    finally:
        stop_process_group(proc)  # still running only if the wait above was interrupted
    elapsed = time.monotonic() - started
    output = run_log.read_text(errors="replace")

    failed_rules = set(re.findall(r"Error in rule (\w+):", output))
    assert returncode == 0, (
        f"snakemake --executor slurm exited {returncode} after {elapsed:.0f} s"
        f"{' (timed out)' if returncode in (124, 137) else ''}:\n{output[-6000:]}\n"
        f"{slurm_logs(output, failed_rules)[-6000:]}\n{slurm_cluster.log_tails(1500)}")

    # Every job of the plan (bar rules the workflow declares local) was submitted to SLURM once,
    # and SLURM says it completed.
    planned = plan(output)
    local_rules = set(re.findall(r"^localrule (\w+):", output, flags=re.M))
    expected = Counter({rule: n for rule, n in planned.items() if rule not in local_rules})
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S*/rule_([^/\s]+)/", output)
    assert Counter(rule for _, _, rule in submitted) == expected, (expected, submitted)
    assert {"prepare_data", "teacher_harvest", "train_phase_a", "train_phase_b", "score"} <= set(expected), expected
    slurm_ids = [slurm_id for _, slurm_id, _ in submitted]
    assert len(set(slurm_ids)) == len(slurm_ids) == expected.total()
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    jobs = slurm_cluster.jobs()
    for slurm_id in slurm_ids:
        assert jobs.get(slurm_id) == (run_id, "COMPLETED"), (slurm_id, jobs.get(slurm_id))
    # ... and each job's SLURM log shows its rule running to the end inside that job.
    for _, slurm_id, rule in submitted:
        logs = list((remote / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{slurm_id}.log"))
        assert len(logs) == 1, (rule, slurm_id, logs)
        text = logs[0].read_text(errors="replace")
        assert re.search(rf"^rule {rule}:", text, flags=re.M) and "1 of 1 steps (100%) done" in text, logs[0]

    # The same artifacts, with the same content, as the local run's.
    assert all((remote / target).exists() for target in SLURM_TARGETS)
    assert artifacts(remote) <= artifacts(local), sorted(map(str, artifacts(remote) - artifacts(local)))
    assert len(artifacts(remote)) >= 10, sorted(map(str, artifacts(remote)))
    problems = differences(local, remote)
    assert not problems, f"{len(problems)} artifacts differ from the local run's:\n" + "\n".join(problems)
    local_time = "shared with the e2e tests" if local_elapsed is None else f"{local_elapsed:.0f} s"
    print(f"\nSLURM run: {expected.total()} SLURM jobs in {elapsed:.0f} s; local run {local_time}")
