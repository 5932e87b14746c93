"""Every codec family's bitstreams, read and written in one place.

Reading tells the families apart by content (:func:`read_bitstream` asks each codec of
``layouts.CODECS`` whether it recognizes the path: the compact magic, a bins folder or zip);
writing goes to the codec the bitstream's layout names (:func:`write_bitstream`).
:func:`save` is stage 8 (encode + write, timed, with the sizes report.json records).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from compression.codec import Codec, CodecState
from compression.layouts import CODECS, LAYOUTS

logger = logging.getLogger(__name__)


def _layouts_of(codec: Codec) -> dict[str, Any]:
    """The layouts whose record names ``codec``, by name."""
    return {name: layout for name, layout in LAYOUTS.items() if layout.codec is codec}


def read_bitstream(path: str | os.PathLike) -> Any:
    """Read and fully validate a bitstream of any family (told apart by content): a bins
    folder, a ``bins.zip`` or a compact ``bitstream.gsc``.

    Returns:
        The family's bitstream object (``bins_format.BinsBitstream``,
        ``compact_format.CompactBitstream``); its ``layout`` names its codec.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a file no family recognizes, or any missing, extra, oversized, corrupt,
            truncated or inconsistent content (``BitstreamError``, ``CompactFormatError``);
            the message names the file.
    """
    path = Path(path)
    for codec in CODECS:
        if codec.recognizes(path):
            return codec.read(path, _layouts_of(codec))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no bitstream there")
    raise ValueError(f"{path}: neither a bins folder, a zip archive nor a compact bitstream "
                     f"(truncated or corrupt)")


def write_bitstream(bitstream: Any, out_dir: str | os.PathLike) -> Path:
    """Write ``bitstream`` with its layout's codec into ``out_dir``; the bitstream file."""
    return bitstream.layout.codec.write(bitstream, out_dir)


def decode_file(path: str | os.PathLike, device: torch.device | str | None = None
                ) -> dict[str, Tensor]:
    """The raw parameters a bitstream file decodes to (:func:`read_bitstream`, then its
    codec's ``decode``) on ``device`` (default CPU)."""
    bitstream = read_bitstream(path)
    return bitstream.layout.codec.decode(bitstream, device)


def save(state: CodecState, params: Mapping[str, Tensor], out_dir: str | os.PathLike, *,
         measure_decode: bool = True) -> dict[str, Any]:
    """Encode with the state's codec and write its container into ``out_dir`` (stage 8; bins:
    ``bins/`` and ``bins.zip``, compact: ``bitstream.gsc``).

    Args:
        state, params: the prepared (finetuned) codec state and parameters.
        out_dir: usually ``utils.output_paths.iteration_dir``.
        measure_decode: also time reading + decoding the file back.

    Returns:
        dict ``path`` (the bitstream file), ``size_bytes``, ``num_gaussians``,
        ``bits_per_gaussian`` (per coded Gaussian), ``bits_per_input_gaussian`` (per Gaussian
        before pruning and merging), ``encode_seconds``, ``decode_seconds`` (None when not
        measured), ``depth`` and ``codebook_size`` (what ran; 0 without VQ).
    """
    codec = state.layout.codec
    logger.info("codec: encoding %d Gaussians into %s", state.num_gaussians, out_dir)
    start = time.perf_counter()
    path = write_bitstream(codec.encode(state, params), out_dir)
    encode_seconds = time.perf_counter() - start
    decode_seconds = None
    if measure_decode:
        logger.info("codec: decoding %s back (decode time)", path)
        start = time.perf_counter()
        decode_file(path, device=state.keys.device)
        decode_seconds = time.perf_counter() - start
    size = path.stat().st_size
    return {"path": str(path), "size_bytes": size, "num_gaussians": state.num_gaussians,
            "bits_per_gaussian": 8.0 * size / state.num_gaussians,
            "bits_per_input_gaussian": 8.0 * size / state.num_input,
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "depth": state.depth,
            "codebook_size": 0 if state.codebook is None else int(state.codebook.shape[0])}
