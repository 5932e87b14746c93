"""Install a pinned npm package into the project's ``.tools/<name>/`` folder (ignored by git).

The one installer of the project's Node.js tools: splat-transform (``utils.splat_transform``)
and the web viewer's renderer (``utils.web_renderer``). Installs are serialised between
processes (parallel test runs, CI jobs) and atomic: a failed or interrupted ``npm install``
leaves no half folder behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

from utils.system_utils import atomic_path

logger = logging.getLogger(__name__)

TOOLS_DIR = Path(__file__).resolve().parents[1] / ".tools"
INSTALL_TIMEOUT_S = 900.0


@contextlib.contextmanager
def install_lock(tools_dir: Path) -> Iterator[None]:
    """Serialise installs into ``tools_dir`` between processes."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    with (tools_dir / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def npm_error_line(output: str) -> str:
    """The first ``npm error`` line of npm's output, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines
              if re.match(r"npm (ERR!|error) ", line) and "complete log" not in line]
    return (errors or lines[-1:] or ["no output"])[0]


def install_package(package: str, version: str, folder: Path, installed: Path, *,
                    missing_npm: type[FileNotFoundError], hint: str) -> Path:
    """``npm install --prefix <folder> <package>@<version>`` unless ``installed`` exists.

    Args:
        package, version: what to install (an exact version: the project pins every tool).
        folder: the install prefix, e.g. ``.tools/splat-transform``; its parent holds the lock.
        installed: the file the install provides (an executable, a built module); returned.
        missing_npm: the error raised when npm is not on PATH (a FileNotFoundError subclass,
            so that entry points print it as their one error line).
        hint: what that error says to install.

    Raises:
        missing_npm: no npm.
        ValueError: npm failed or ran past :data:`INSTALL_TIMEOUT_S`; names ``folder``.
    """
    if installed.is_file():
        return installed
    npm = shutil.which("npm")
    if npm is None:
        raise missing_npm(f"{package}: npm not found: {hint}")
    with install_lock(folder.parent):
        if installed.is_file():  # another process installed it meanwhile
            return installed
        logger.info("installing %s@%s into %s (first use)", package, version, folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            command = [npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund",
                       "--loglevel=error", f"{package}@{version}"]
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise ValueError(f"{folder}: npm install of {package}@{version} took longer "
                                 f"than {INSTALL_TIMEOUT_S:.0f} s") from None
            if done.returncode != 0:
                raise ValueError(f"{folder}: npm install of {package}@{version} failed: "
                                 f"{npm_error_line(done.stdout + done.stderr)}")
    return installed
