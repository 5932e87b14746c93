"""The report's tables as text cells (the summary of every variant, the results.csv sweep) and
the summary as the fixed-width table make_report.py prints; the page shows the same cells."""
from __future__ import annotations

from typing import Optional

from reporting.collect import ReportData
from utils.output_paths import RESULTS_HEADER


def number_text(value: Optional[float], spec: str) -> str:
    """A table cell: ``value`` formatted with ``spec``, ``-`` when it is unknown."""
    return "-" if value is None else format(value, spec)


def size_text(n_bytes: int) -> str:
    """A byte size for people: kB below a megabyte, MB from there."""
    return f"{n_bytes / 1e6:.2f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def table_rows(data: ReportData) -> list[list[str]]:
    """The summary table as text cells, header first (shared by the terminal and the HTML);
    a variant metrics.py has not measured is marked ``*``."""
    rows = [["variant", "PSNR", "SSIM", "LPIPS", "size", "bits/Gaussian", "bits/input Gaussian",
             "#Gaussians", "ratio", "encode s", "decode s"]]
    for v in data.variants:
        rows.append([v.label + ("" if v.measured else "*"), number_text(v.psnr, ".2f"),
                     number_text(v.ssim, ".4f"), number_text(v.lpips, ".4f"),
                     size_text(v.size_bytes), f"{v.bits_per_gaussian:.1f}",
                     f"{data.bits_per_input_gaussian(v.size_bytes):.1f}", str(v.num_gaussians),
                     f"{v.ratio:.1f}x", number_text(v.encode_seconds, ".1f"),
                     number_text(v.decode_seconds, ".2f")])
    return rows


def sweep_rows(data: ReportData) -> list[list[str]]:
    """``compression/results.csv`` as text cells, its header first."""
    return [list(RESULTS_HEADER)] + [
        [p.submethod, number_text(p.psnr, ".2f"), number_text(p.ssim, ".4f"),
         number_text(p.lpips, ".4f"), str(p.size_bytes), str(p.num_gaussians)]
        for p in data.sweep]


def format_table(data: ReportData) -> str:
    """Fixed-width text table of :func:`table_rows`, with a footnote when one is needed."""
    rows = table_rows(data)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    if not data.measured:
        lines.append("* quality from the codec's report.json or peer.json (metrics.py has not "
                     "measured it)")
    return "\n".join(lines)
