"""The tables of README.md, from the files in this folder only (no GPU, no DAG):

    PYTHONPATH=src python docs/results/qwen1.5b/grid_run2/tables.py > docs/results/qwen1.5b/grid_run2/tables.md

The tables themselves are ../grid_tables.py, shared by the grid runs.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from grid_tables import main  # noqa: E402

if __name__ == "__main__":
    main(HERE)
