"""The tables of README.md, from the files in this folder only (no GPU, no DAG):

    PYTHONPATH=src python docs/results/qwen1.5b/grid_run3/tables.py > docs/results/qwen1.5b/grid_run3/tables.md

The tables themselves are ../grid_tables.py, shared by the grid runs.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from grid_tables import main  # noqa: E402

#: each model's training or DPO log: its dev accuracy in its primary mode, against its test result
DEV_LOGS = {"phaseA": "training_log_phaseA.json", "phaseB": "training_log_phaseB.json",
            "phaseC": "dpo_log_phaseC.json", "variant_seed_collapse": "dpo_log_variant_seed_collapse.json",
            "variant_multitask_b": "training_log_variant_multitask_b.json",
            "variant_self_train_b": "training_log_variant_self_train_b.json"}

if __name__ == "__main__":
    main(HERE, DEV_LOGS)
