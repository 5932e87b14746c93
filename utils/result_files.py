"""Reading the JSON files one step writes for the next: the codec's ``report.json``, another
tool's ``peer.json`` and metrics.py's ``results.json`` / ``per_view.json``.

The one reader of each, here at the foundation so that metrics.py's evaluation
(``utils.metrics_utils``) reads report.json as the HTML report, ``sweep.py`` and the benchmarks
do. The writers live with the codec's other result files (``reporting.codec_results``); the
key lists below are what both sides agree on.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

#: the report.json keys every reader relies on (:func:`read_report` checks them; reports written
#: before ``bits_per_input_gaussian`` existed still read)
REPORT_KEYS = ("layout", "iteration", "size_bytes", "num_gaussians", "bits_per_gaussian",
               "encode_seconds", "decode_seconds", "ply_size_bytes")
#: the peer.json keys every reader relies on (:func:`read_peer_report` checks them): the codec
#: and its label, the tool that ran it, the file it wrote (in the peer folder), sizes, counts
#: (``num_gaussians`` decoded, ``input_gaussians`` in the PLY it encoded) and times
PEER_REPORT_KEYS = ("codec", "label", "tool", "file", "size_bytes", "num_gaussians",
                    "input_gaussians", "bits_per_gaussian", "bits_per_input_gaussian",
                    "encode_seconds", "decode_seconds", "ply_size_bytes")


def read_json(path: str | os.PathLike) -> Any:
    """The content of a JSON file another step wrote (report.json, metrics.py's results.json).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it is not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the step that writes it first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A ``report.json`` written by ``reporting.codec_results.write_report``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not JSON, or one of :data:`REPORT_KEYS` is missing.
    """
    return _read_json_with_keys(path, REPORT_KEYS)


def read_peer_report(path: str | os.PathLike) -> dict[str, Any]:
    """A ``peer.json`` written by ``reporting.codec_results.write_peer_report``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not JSON, or one of :data:`PEER_REPORT_KEYS` is missing.
    """
    return _read_json_with_keys(path, PEER_REPORT_KEYS)


def _read_json_with_keys(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, Any]:
    """A JSON object file that must hold every one of ``keys`` (:func:`read_json`'s errors;
    ValueError naming the missing keys)."""
    content = read_json(path)
    missing = [key for key in keys if key not in content]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return content
