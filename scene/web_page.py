"""The compact bitstream's own viewer page: one self-contained HTML file showing a ``.gsc``.

``web/viewer.html`` is the page; its ``<!--gsc:payload-->`` marker becomes ``<script>``
elements holding the page's code: the PlayCanvas engine's built ES module (found by
:mod:`utils.web_renderer`), ``web/viewer.mjs`` and the decoder's worker (``gsc-worker.mjs``
over ``gsc.mjs``, joined into one classic script: Chromium starts no module worker in a page
opened from a file), each gzip-compressed and base64-encoded (the page inflates them with the
browser's ``DecompressionStream``); and the ``.gsc`` bytes, base64-encoded. The browser decodes the file
itself (JavaScript decoder in a worker) and draws it with the engine's splat renderer. The
same page shows another ``.gsc`` hosted beside it with ``?url=<file.gsc>``.
"""
from __future__ import annotations

import base64
import gzip
import html
import os
import re
from pathlib import Path

from compression.compact_format import is_compact_file
from utils.system_utils import atomic_path
from utils.web_renderer import WEB_DIR, renderer_module

#: what an ``.html`` export embeds (render.py ``--web_format``): the compact bitstream itself
#: (this page), or splat-transform's SOG page (``scene.interop.export_model``)
WEB_FORMATS = ("gsc", "sog")
TEMPLATE = WEB_DIR / "viewer.html"
PAYLOAD_MARKER = "<!--gsc:payload-->"
_WORKER_IMPORT = re.compile(r"^import \{ decodeGsc \} from '\./gsc\.mjs';\n", re.M)
_EXPORT_KEYWORD = re.compile(r"^export (?=(class|const|function) )", re.M)
_MODULE_SYNTAX = re.compile(r"^(import|export)\b", re.M)


def classic_worker() -> str:
    """The decoder's worker as one classic script: ``gsc.mjs`` without its ``export``
    keywords, then ``gsc-worker.mjs`` without its import of it.

    Raises:
        ValueError: the modules use import / export forms this join does not handle.
    """
    decoder = _EXPORT_KEYWORD.sub("", (WEB_DIR / "gsc.mjs").read_text())
    worker, imports = _WORKER_IMPORT.subn("", (WEB_DIR / "gsc-worker.mjs").read_text())
    joined = f"{decoder}\n{worker}"
    if imports != 1 or _MODULE_SYNTAX.search(joined):
        raise ValueError(f"{WEB_DIR}: gsc.mjs / gsc-worker.mjs use an import or export form "
                         "the viewer page cannot join into a classic worker")
    return joined


def _packed(source: bytes) -> str:
    """gzip (fixed header: the page is reproducible) then base64."""
    return base64.b64encode(gzip.compress(source, compresslevel=9, mtime=0)).decode("ascii")


def _element(element_id: str, media_type: str, payload: str, **data: str) -> str:
    attributes = "".join(f' data-{key}="{html.escape(value)}"' for key, value in data.items())
    return f'<script type="{media_type}" id="{element_id}"{attributes}>{payload}</script>'


def gsc_page(gsc: bytes | None, name: str = "") -> str:
    """The viewer page's HTML, embedding ``gsc`` (shown as ``name``), or no scene (None: the
    page then shows only what ``?url=`` names).

    Raises:
        RendererUnavailable, FileNotFoundError, ValueError: see
            :func:`utils.web_renderer.renderer_module`.
    """
    code = {"gsc-renderer": renderer_module().read_bytes(),
            "gsc-viewer": (WEB_DIR / "viewer.mjs").read_bytes(),
            "gsc-worker": classic_worker().encode()}
    elements = [_element(element_id, "application/gzip;base64", _packed(source))
                for element_id, source in code.items()]
    if gsc is not None:
        elements.append(_element("gsc-scene", "application/octet-stream;base64",
                                 base64.b64encode(gsc).decode("ascii"), name=name))
    template = TEMPLATE.read_text()
    if template.count(PAYLOAD_MARKER) != 1:
        raise ValueError(f"{TEMPLATE}: expected one {PAYLOAD_MARKER} marker")
    return template.replace(PAYLOAD_MARKER, "\n".join(elements))


def write_gsc_page(gsc: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Write the viewer page of the compact bitstream ``gsc`` to ``destination`` (atomic).

    The file is embedded as it is: check it first (render.py decodes it before exporting).

    Raises:
        ValueError: ``gsc`` is no compact bitstream.
        RendererUnavailable, FileNotFoundError: see :func:`gsc_page`.
    """
    gsc, destination = Path(gsc), Path(destination)
    if not is_compact_file(gsc):
        raise ValueError(f"{gsc}: not a compact bitstream (.gsc); the .gsc viewer page shows "
                         "only those (--web_format sog writes a SOG page of any model)")
    page = gsc_page(gsc.read_bytes(), gsc.name)
    with atomic_path(destination) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return destination
