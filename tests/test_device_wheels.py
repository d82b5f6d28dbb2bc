"""tools/device/wheels.sh: a wheel carried in two halves over two device calls is joined and installed.

On the device, a carried folder is gone in the next call; the first call stashes its half outside the
checkout (``stash_half``), the second carries the other half and installs (``install_wheels``).
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO

NAME = "tinywheel-0.1-py3-none-any.whl"


def make_wheel(path: Path) -> bytes:
    """A minimal pure-Python wheel that pip installs: one module, its metadata and record."""
    files = {"tinywheel.py": "VALUE = 42\n",
             "tinywheel-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinywheel\nVersion: 0.1\n",
             "tinywheel-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                              "Tag: py3-none-any\n"}
    files["tinywheel-0.1.dist-info/RECORD"] = "".join(f"{name},,\n" for name in files) + \
        "tinywheel-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path.read_bytes()


def wheels(cwd: Path, script: str, halves: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WHEEL_HALVES": str(halves),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", f"source {REPO / 'tools/device/wheels.sh'}; {script}"], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_a_wheel_in_two_halves_over_two_calls_is_joined_and_installed(tmp_path):
    data = make_wheel(tmp_path / NAME)
    first, second = data[: len(data) // 2], data[len(data) // 2:]
    call = tmp_path / "checkout"
    halves = tmp_path / "halves"
    (call / ".whl-bnb").mkdir(parents=True)
    (call / ".whl-bnb" / f"{NAME}.part0").write_bytes(first)
    assert wheels(call, "stash_half .whl-bnb", halves).returncode == 0  # call 1 carries .whl-bnb/
    (call / ".whl-bnb" / f"{NAME}.part0").unlink()
    (call / ".whl-bnb").rmdir()  # gone in the next call
    (call / ".whl-bnb2").mkdir()
    target = tmp_path / "site"

    missing = wheels(call, f"install_wheels .whl-bnb {target}", halves)  # call 2 without the second half
    assert missing.returncode == 1
    assert missing.stdout.strip() == (f"install_wheels: carry .whl-bnb2/ too (the second half of "
                                      f"{halves}/.whl-bnb/{NAME}.part0)")

    (call / ".whl-bnb2" / f"{NAME}.part1").write_bytes(second)
    done = wheels(call, f"install_wheels .whl-bnb {target}", halves)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (halves / ".whl-bnb" / NAME).read_bytes() == data
    assert (target / "tinywheel.py").read_text() == "VALUE = 42\n" and (target / ".installed-bnb").is_file()
    again = wheels(call, f"install_wheels .whl-bnb {target}", halves)  # once only: the marker
    assert again.returncode == 0 and again.stdout == ""


def test_stash_half_without_the_folder_is_one_line(tmp_path):
    result = wheels(tmp_path, "stash_half .whl-bnb", tmp_path / "halves")
    assert result.returncode == 1 and result.stdout.strip() == "stash_half: .whl-bnb/ was not carried in this call"
