"""Find, install and run PlayCanvas's ``splat-transform`` (npm ``@playcanvas/splat-transform``).

The one door to the tool for every reader, writer and benchmark of other splat formats (SPZ,
SOG, PlayCanvas compressed.ply, .splat, .ksplat, the HTML viewer page). It is looked up in this
order:

1. ``$SPLAT_TRANSFORM``: the path of an executable, used as given (any version);
2. ``splat-transform`` on PATH, when it reports the pinned version :data:`VERSION`;
3. the project's own copy, ``.tools/splat-transform/`` (ignored by git), installed there on
   first use with ``npm install --prefix .tools/splat-transform @playcanvas/splat-transform@3.7.0``.

Without Node.js / npm the lookup raises :class:`SplatTransformUnavailable` (a
FileNotFoundError, so entry points print it as their one error line) saying what to install.
Every run has a timeout, its output is captured, and a failure becomes one ValueError line
naming the file concerned.

``python -m utils.splat_transform`` installs the tool if needed and prints its path (CI).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from utils.npm_packages import TOOLS_DIR, install_package, npm_error_line

logger = logging.getLogger(__name__)

PACKAGE = "@playcanvas/splat-transform"
VERSION = "3.7.0"
ENV_VAR = "SPLAT_TRANSFORM"
INSTALL_DIR = TOOLS_DIR / "splat-transform"
INSTALLED_EXECUTABLE = INSTALL_DIR / "node_modules" / ".bin" / "splat-transform"
#: default limit of one conversion; SOG / HTML output of a large scene clusters SH on the CPU
RUN_TIMEOUT_S = 3600.0
NODE_HINT = ("install Node.js 20 or newer with npm (Debian/Ubuntu: apt-get install nodejs npm; "
             f"else https://nodejs.org), or set {ENV_VAR} to a splat-transform {VERSION} "
             "executable")
_VERSION_OUTPUT = re.compile(r"splat-transform v(\d+\.\d+\.\d+)")


class SplatTransformUnavailable(FileNotFoundError):
    """The tool is not installed and cannot be (no Node.js / npm)."""


def splat_transform_executable(install: bool = True) -> Path:
    """Path of the splat-transform executable (see the module docstring for the order).

    Args:
        install: install the project's copy with npm when nothing else is found.

    Raises:
        FileNotFoundError: ``$SPLAT_TRANSFORM`` names no file.
        SplatTransformUnavailable: no tool, and node / npm are missing (or ``install`` is False).
        ValueError: npm failed to install it.
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={explicit}: no such executable")
        return path
    node = shutil.which("node")
    if node is None:
        raise SplatTransformUnavailable(f"splat-transform: Node.js (node) not found: {NODE_HINT}")
    on_path = shutil.which("splat-transform")
    if on_path is not None:
        found = _reported_version(on_path)
        if found == VERSION:
            return Path(on_path)
        logger.warning("splat-transform on PATH (%s) reports version %s, not %s: using the "
                       "project's pinned copy", on_path, found, VERSION)
    if INSTALLED_EXECUTABLE.is_file():
        return INSTALLED_EXECUTABLE
    if not install:
        raise SplatTransformUnavailable(f"splat-transform: not installed in {INSTALL_DIR}")
    return _install()


def splat_transform_available() -> bool:
    """Whether a run can happen now or after an install (a tool found, or node and npm)."""
    try:
        splat_transform_executable(install=False)
    except SplatTransformUnavailable:
        return shutil.which("node") is not None and shutil.which("npm") is not None
    except FileNotFoundError:
        return False
    return True


def splat_transform_version() -> Optional[str]:
    """The version the tool in use reports (``--version``; e.g. ``3.7.0``), None when it
    reports none. Installs the tool like a run would.

    Raises:
        SplatTransformUnavailable, FileNotFoundError, ValueError: see
            :func:`splat_transform_executable`.
    """
    return _reported_version(str(splat_transform_executable()))


@functools.lru_cache(maxsize=8)
def _reported_version(executable: str) -> Optional[str]:
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION_OUTPUT.search(done.stdout + done.stderr)
    return match.group(1) if match else None


def _install() -> Path:
    return install_package(PACKAGE, VERSION, INSTALL_DIR, INSTALLED_EXECUTABLE,
                           missing_npm=SplatTransformUnavailable, hint=NODE_HINT)


def _failure_reason(output: str) -> str:
    """The first error line of splat-transform (``✗ Error: ...``), else npm's
    (:func:`utils.npm_packages.npm_error_line`)."""
    errors = [line.strip().lstrip("✗ ") for line in output.splitlines()
              if line.strip().startswith("✗") and not line.strip().startswith("✗ failed in")]
    return errors[0] if errors else npm_error_line(output)


def run_splat_transform(args: Sequence[str], *, subject: str | os.PathLike,
                        timeout_s: float = RUN_TIMEOUT_S) -> str:
    """Run ``splat-transform <args>`` and return what it printed.

    Args:
        args: arguments after the executable.
        subject: the file an error line names (the input the user gave).
        timeout_s: the run is killed after this many seconds.

    Raises:
        SplatTransformUnavailable, FileNotFoundError: see :func:`splat_transform_executable`.
        ValueError: the tool failed, could not start or ran past ``timeout_s``: one line
            ``<subject>: splat-transform ...``.
    """
    executable = splat_transform_executable()
    try:
        done = subprocess.run([str(executable), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{subject}: splat-transform took longer than {timeout_s:.0f} s") \
            from None
    except OSError as exc:
        raise ValueError(f"{subject}: cannot run splat-transform {executable} "
                         f"({exc.strerror or exc})") from None
    if done.returncode != 0:
        raise ValueError(f"{subject}: splat-transform failed: "
                         f"{_failure_reason(done.stdout + done.stderr)}")
    return done.stdout + done.stderr


def convert(source: str | os.PathLike, destination: str | os.PathLike, *,
            subject: Optional[str | os.PathLike] = None,
            timeout_s: float = RUN_TIMEOUT_S) -> Path:
    """Convert one splat file into another; the tool picks both formats by file name.

    ``-g cpu`` is always passed: SOG and HTML output cluster the SH coefficients, and the CPU
    path runs on every machine (no WebGPU adapter is needed). The output is written in a
    temporary folder beside ``destination`` and renamed into place, so a failed run leaves
    nothing behind.

    Args:
        source: input file, named with the extension of its format (``.ply``, ``.spz``,
            ``.sog``, ``.splat``, ``.ksplat``; a compressed.ply is a ``.ply``).
        destination: output file (``.ply``, ``.compressed.ply``, ``.spz``, ``.sog``, ``.html``).
        subject: the file error lines name (default: ``source``).
        timeout_s: limit of the run.

    Raises:
        SplatTransformUnavailable, FileNotFoundError, ValueError: see
            :func:`run_splat_transform`; also ValueError when the tool wrote no output.
    """
    destination = Path(destination)
    subject = source if subject is None else subject
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".splat-transform-") as tmp:
        written = Path(tmp) / destination.name
        run_splat_transform(["-w", "-q", "-g", "cpu", source, written], subject=subject,
                            timeout_s=timeout_s)
        if not written.is_file() or written.stat().st_size == 0:
            raise ValueError(f"{subject}: splat-transform wrote no {destination.name}")
        os.replace(written, destination)
    return destination


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(splat_transform_executable())
    except (FileNotFoundError, ValueError) as error:
        print(f"splat_transform: error: {error}", file=sys.stderr)
        sys.exit(1)
