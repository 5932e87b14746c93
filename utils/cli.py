"""Entry-point error handling shared by the entry points (train.py, render.py, metrics.py,
sweep.py, scripts/make_report.py, scripts/rd_sweep.py): bad input is one line and exit
status 2."""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Sequence

#: exit status for bad input (every entry point), as argparse uses for usage errors
EXIT_BAD_INPUT = 2


def run_main(main: Callable[[Optional[Sequence[str]]], Any], prog: str,
             argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(argv)``; bad input becomes one line on stderr instead of a traceback.

    A ValueError or FileNotFoundError raised anywhere below ``main`` (a missing file, a corrupt
    bins.zip, an invalid flag value) prints ``<prog>: error: <message>`` and gives exit status
    2, like argparse. Anything else propagates (a bug keeps its traceback).

    Returns:
        The exit status: 0, ``main``'s integer result, or 2 on bad input.
    """
    try:
        result = main(argv)
    except (ValueError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return result if isinstance(result, int) else 0
