"""Logging for workflow scripts: every rule logs to its own file and to stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the ``clarify`` loggers (and warnings) to ``log_path`` and stderr."""
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: getattr(record, "console", True))
    handlers: list[logging.Handler] = [console]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger("clarify")
