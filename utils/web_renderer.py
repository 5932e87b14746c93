"""Find or install the splat renderer the .gsc viewer page inlines: the PlayCanvas engine.

The package and its exact version are the one dependency pinned in ``web/package.json`` (the
page's modules are there too). The project's copy lives in ``.tools/playcanvas/`` (ignored by
git), installed with npm on first use or by ``make tools``; ``$GSC_VIEWER_RENDERER`` may name
another built ES module of the engine (``playcanvas.min.mjs``) instead.

``python -m utils.web_renderer`` installs it if needed and prints the module's path (CI).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from utils.npm_packages import TOOLS_DIR, install_package

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
PACKAGE = "playcanvas"
ENV_VAR = "GSC_VIEWER_RENDERER"
INSTALL_DIR = TOOLS_DIR / PACKAGE
#: the built, minified ES module of the engine (one file, no imports)
MODULE = Path("node_modules") / PACKAGE / "build" / "playcanvas.min.mjs"
NODE_HINT = (f"install Node.js 18 or newer with npm (Debian/Ubuntu: apt-get install nodejs npm), "
             f"run `make tools`, or set {ENV_VAR} to a built playcanvas.min.mjs")


class RendererUnavailable(FileNotFoundError):
    """The renderer is not installed and cannot be (no npm)."""


def pinned_version() -> str:
    """The engine version ``web/package.json`` pins (its ``dependencies``)."""
    return json.loads((WEB_DIR / "package.json").read_text())["dependencies"][PACKAGE]


def renderer_module(install: bool = True) -> Path:
    """Path of the engine's built ES module (``$GSC_VIEWER_RENDERER``, else the project's copy).

    Args:
        install: install the project's copy with npm when it is missing.

    Raises:
        FileNotFoundError: ``$GSC_VIEWER_RENDERER`` names no file.
        RendererUnavailable: not installed, and npm is missing (or ``install`` is False).
        ValueError: npm failed to install it.
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{ENV_VAR}={explicit}: no such file")
        return path
    installed = INSTALL_DIR / MODULE
    if installed.is_file():
        return installed
    if not install:
        raise RendererUnavailable(f"{PACKAGE}: not installed in {INSTALL_DIR}: {NODE_HINT}")
    return install_package(PACKAGE, pinned_version(), INSTALL_DIR, installed,
                           missing_npm=RendererUnavailable, hint=NODE_HINT)


def renderer_available() -> bool:
    """Whether the renderer is there or can be installed now (npm on PATH)."""
    try:
        renderer_module(install=False)
    except RendererUnavailable:
        return shutil.which("npm") is not None
    except FileNotFoundError:
        return False
    return True


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(renderer_module())
    except (FileNotFoundError, ValueError) as error:
        print(f"web_renderer: error: {error}", file=sys.stderr)
        sys.exit(1)
