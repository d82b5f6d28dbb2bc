"""The rule scripts' one-line error reporting: bad input and Ctrl-C, never a traceback."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from clarify.errors import InputError, one_line_errors
    from clarify.logs import setup_logging

    @one_line_errors
    def main(kind):
        setup_logging(sys.argv[2])
        if kind == "bad":
            raise InputError("data.csv: row 2 (qid b): field 'answer': unrecognised value 'maybe'")
        print("ready", flush=True)
        time.sleep(60)

    main(sys.argv[1])
""")


def run_script(tmp_path, kind, interrupt=False):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(src=str(SRC)))
    # SIGINT back to its default in the child: a runner started in the background by a shell without job
    # control ignores SIGINT, the child inherits that, and Python then installs no Ctrl-C handler.
    proc = subprocess.Popen([sys.executable, str(script), kind, str(tmp_path / "job.log")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if interrupt:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    code, err = run_script(tmp_path, "sleep", interrupt=True)
    assert code == 130
    assert "interrupted (Ctrl-C)" in (tmp_path / "job.log").read_text()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines() == ["ERROR: interrupted (Ctrl-C): finished jobs, caches and checkpoints are kept; "
                                        "run the same command again to resume"]


def test_input_error_is_one_line_and_exit_1(tmp_path):
    code, err = run_script(tmp_path, "bad")
    assert code == 1
    assert err.strip().splitlines() == ["ERROR: data.csv: row 2 (qid b): field 'answer': unrecognised value 'maybe'"]
