"""``ifd report RUN_DIR``: the run's HTML report (and, with ``--screenshot``, a PNG of it).

``register(subparsers)`` adds the ``report`` command to the ``ifd`` parser. Failures are
``ifd.errors.IfdError`` (one line naming the file and the reason, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report; print its path, size and build time."""
    from ifd.report.build import write_report

    result = write_report(
        Path(args.run_dir),
        labels=Path(args.labels) if args.labels else None,
        out=Path(args.out) if args.out else None,
        bucket_s=args.bucket,
        catalog=Path(args.catalog) if args.catalog else None,
    )
    print(result.path)
    signals = ", ".join(f"{k} {v}" for k, v in sorted(result.signals.items())) or "none"
    print(f"[ifd] report: {result.size_bytes / 1e6:.1f} MB in {result.seconds:.2f} s (signals: {signals})",
          file=sys.stderr)
    if args.screenshot:
        from ifd.report.screenshot import save_screenshot

        shot = save_screenshot(result.path, Path(args.screenshot), width=args.width)
        print(f"[ifd] screenshot: {shot}", file=sys.stderr)
    return 0


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def register(subparsers) -> None:
    """Add ``report`` to the ``ifd`` command's subparsers."""
    report = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a run folder (signals on the underlying, strike pressure, "
        "v1 vs v3, evaluation, data quality, latency, NautilusTrader's tearsheet)",
        description="Write RUN_DIR/report.html (or --out): the underlying's price with the v1 and v3 signals, a "
        "strike-by-time heatmap of option buy/sell pressure, v1 vs v3 realized P&L and the A/B table, the "
        "evaluation against labels, the data-quality and latency figures, and NautilusTrader's tearsheet. "
        "plotly.js is embedded once: the file opens offline.",
    )
    report.add_argument("run_dir", help="a backtest run folder (or a live session folder)")
    report.add_argument("--labels", help="score the signals against this labels.parquet now (else evaluation.json)")
    report.add_argument("--out", help="report file (default: RUN_DIR/report.html)")
    report.add_argument("--catalog", help="catalog of the run (default: the one in summary.json)")
    report.add_argument("--bucket", type=_positive, default=60.0,
                        help="time bucket of the pressure heatmap in seconds (default: %(default)g)")
    report.add_argument("--screenshot", help="also save a full-page PNG of the report (needs Chromium, selenium)")
    report.add_argument("--width", type=int, default=1400, help="screenshot width in pixels (default: %(default)s)")
    report.set_defaults(func=cmd_report)

