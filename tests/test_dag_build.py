"""Building the DAG (every ``snakemake`` call, ``-n`` included) stays light: no torch, no model stack.

``snakemake -n results/report.md`` should answer in a few seconds (issue 19); importing torch and
transformers alone takes longer than that on a laptop core. The rule files may import clarify
modules only where those defer their heavy imports to the functions that need them.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "strategyqa" / "strategyqa_train.json"
#: What no DAG build may import (torch's stack), and what the rule files' own imports may not pull in
#: either (pandas/numpy: Snakemake itself does without them unless a plugin imports them).
MODEL_STACK = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
DATA_STACK = ("pandas", "numpy", "matplotlib", "statsmodels", "scipy")


def loaded(code: str, modules: tuple[str, ...], cwd: Path = REPO) -> dict:
    """Run ``code`` in a fresh interpreter; which of ``modules`` it left in ``sys.modules``, and its exit."""
    probe = ("import gc, json, sys\ncode = 0\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
             + "except SystemExit as exc:\n    code = exc.code\n"
             + f"print('PROBE ' + json.dumps({{'exit': code, 'loaded': [m for m in {list(modules)!r} "
             + "if m in sys.modules], 'frozen': gc.get_freeze_count()}))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"the probe did not finish ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return {**json.loads(lines[-1][len("PROBE "):]), "output": result.stdout + result.stderr}


def test_rule_files_import_only_light_clarify_modules():
    statements = sorted({match.group(0).strip() for path in (REPO / "workflow" / "rules").glob("*.smk")
                         for match in re.finditer(r"^(from clarify\S* import .+|import clarify\S*.*)$",
                                                  path.read_text(), flags=re.M)})
    assert statements, "no clarify import found in workflow/rules/*.smk"
    probe = loaded("\n".join(statements), MODEL_STACK + DATA_STACK)
    assert probe["exit"] in (0, None) and probe["loaded"] == [], (statements, probe["loaded"])


def test_dry_run_of_the_demo_imports_no_torch(tmp_path):
    argv = ["snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n", "results/report.md",
            "--configfile", str(REPO / "config.yaml"), str(REPO / "config" / "demo.yaml"),
            "--config", f"data={{source: {SHARED_DATA}}}"]
    probe = loaded(f"import runpy\nsys.argv = {argv!r}\nrunpy.run_module('snakemake', run_name='__main__')",
                   MODEL_STACK, cwd=tmp_path)
    assert probe["exit"] in (0, None), probe["output"][-3000:]
    assert "Job stats:" in probe["output"] and "report" in probe["output"]
    assert probe["loaded"] == [], f"building the DAG imported {probe['loaded']}"
    # the Snakefile's gc.freeze(): Snakemake's ~1200 modules skipped by every later collection (~0.7 s)
    assert probe["frozen"] > 50_000, probe["frozen"]


DUMP_TRAINING_PARAMS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings, ResourceSettings
repo, workdir, overrides = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=2), snakefile=repo / "Snakefile", workdir=workdir,
                            config_settings=ConfigSettings(configfiles=[repo / "config.yaml", repo / "config" / "demo.yaml"],
                                                           config=overrides))
    dag = workflow.dag(DAGSettings(targets={"results/report.md"}))
    dag.execute_workflow(executor="dryrun", execution_settings=ExecutionSettings())
    jobs = workflow._workflow.dag.jobs
    print("PARAMS " + json.dumps({job.rule.name: dict(job.params.items())["eval"] for job in jobs
                                  if job.rule.name.startswith("train_phase")}))
"""


def training_eval_params(tmp_path, overrides: dict) -> dict:
    overrides = {"data": {"source": str(SHARED_DATA)}, **overrides}
    result = subprocess.run([sys.executable, "-c", DUMP_TRAINING_PARAMS, str(REPO), str(tmp_path), json.dumps(overrides)],
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PARAMS ")]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(lines[-1][len("PARAMS "):])


def test_a_cot_sc_dev_check_gets_the_self_consistency_settings_and_only_its_phase_reruns(tmp_path):
    """phase_c.dev_mode: cot_sc puts eval.sc_* into Phase C's params (so changing them reruns Phase C);
    Phases A and B, whose dev checks do not sample, keep the params they had (no rerun)."""
    before = training_eval_params(tmp_path / "a", {"phase_c": {"dev_mode": "cot"}})
    after = training_eval_params(tmp_path / "b", {"phase_c": {"dev_mode": "cot_sc"}, "eval": {"sc_samples": 3}})
    assert set(before) == {"train_phase_a", "train_phase_b", "train_phase_c"}
    assert not any(key.startswith("sc_") for params in before.values() for key in params)
    assert after["train_phase_a"] == before["train_phase_a"] and after["train_phase_b"] == before["train_phase_b"]
    assert after["train_phase_c"] == {**before["train_phase_c"], "sc_samples": 3, "sc_temperature": 0.7, "sc_seed": 0}
