"""Expected, user-facing errors and the one-line way they are reported."""

from __future__ import annotations

import functools
import logging
import sys


class InputError(Exception):
    """Bad input the user can fix (data file, config value, model path).

    Its message is one line naming the file, row and field (or config key) at fault; the
    workflow scripts print it without a traceback and exit non-zero.
    """


INTERRUPTED = ("interrupted (Ctrl-C): finished jobs, caches and checkpoints are kept; "
               "run the same command again to resume")


def one_line_errors(func):
    """Run ``func``; report an :class:`InputError` as one line on stderr and exit 1, and Ctrl-C
    (KeyboardInterrupt) as one line and exit 130, the shell's code for SIGINT: no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            logging.getLogger("clarify").error(INTERRUPTED, extra={"console": False})
            logging.shutdown()
            print(f"ERROR: {INTERRUPTED}", file=sys.stderr)
            sys.exit(130)
        except InputError as exc:
            message = " ".join(str(exc).split())
            # The log file gets it; the console gets it once, without a timestamp.
            logging.getLogger("clarify").error(message, extra={"console": False})
            logging.shutdown()
            print(f"ERROR: {message}", file=sys.stderr)
            sys.exit(1)

    return wrapper
