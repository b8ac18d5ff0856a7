"""The report's HTML tables: the A/B comparison, the evaluation, the monitors' figures.

Every value is escaped; missing values show as "-". Column headers carry their units.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from collections.abc import Sequence

from ifd.evaluation.forward import horizon_key
from ifd.evaluation.matching import FALSE_POSITIVE_CAUSES
from ifd.evaluation.report import EPISODE_KINDS


def fmt(value, digits: int = 3, thousands: bool = False) -> str:
    """A number with ``digits`` decimals (ints as they are), "-" for None/NaN, text as is."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if thousands else str(value)
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"
    return str(value)


def fmt_pct(value, digits: int = 1) -> str:
    """A 0-1 share as a percentage."""
    return "-" if value is None or not isinstance(value, (int, float)) else f"{100 * value:.{digits}f}%"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "", css: str = "") -> str:
    """An HTML table of already formatted cells (escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="{css or "data"}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def key_values(pairs: Iterable[tuple[str, str]], caption: str = "") -> str:
    """A two-column table of (label, value)."""
    return table(("figure", "value"), pairs, caption, css="data kv")


def ab_table(comparison: list[dict]) -> str:
    """``summary.json`` ``comparison``: the IFD strategies side by side."""
    header = (
        "strategy", "algorithm", "mode", "signals", "signals acted", "orders", "positions",
        "realized P&L (USD)", "healthy at end", "fallback / status events", "decision latency p99 (µs)",
    )
    rows = []
    for row in comparison:
        events = row.get("fallback") or []
        event_text = "; ".join(
            str(e.get("reason") or e.get("text") or e) if isinstance(e, dict) else str(e) for e in events
        )
        rows.append(
            (
                row.get("strategy_id", ""), row.get("algorithm", ""), row.get("mode", ""),
                fmt(row.get("signals")), fmt(row.get("signals_acted")), fmt(row.get("orders")),
                fmt(row.get("positions")), fmt(row.get("realized_pnl_usd"), 2, thousands=True),
                fmt(row.get("healthy_at_end")), f"{len(events)}" + (f": {event_text}" if events else ""),
                fmt(row.get("decision_latency_us_p99"), 1),
            ),
        )
    return table(header, rows, css="data ab")


def _forward(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{fmt(entry.get('accuracy'))} ({entry.get('count', 0)})"


def detection_table(evaluation: dict) -> str:
    """Precision, recall, F1, episodes, false positives by cause, delay and forward accuracy per
    algorithm (the IFD ones and the naive reference)."""
    minutes = evaluation.get("forward_minutes") or []
    header = (
        ["algorithm", "precision", "recall", "F1", "signals", "episodes detected"]
        + [f"FP {cause}" for cause in FALSE_POSITIVE_CAUSES]
        + ["median delay (s)"]
        + [f"fwd {m} min accuracy (n)" for m in minutes]
    )
    rows = []
    for name in evaluation.get("algorithms", []):
        row = evaluation.get(name)
        if not isinstance(row, dict):
            continue
        causes = row.get("false_positives_by_cause") or {}
        forward = row.get("forward_accuracy") or {}
        rows.append(
            [name, fmt(row.get("precision")), fmt(row.get("recall")), fmt(row.get("f1")), fmt(row.get("signals")),
             f"{row.get('episodes_detected', 0)} / {row.get('episodes', 0)}"]
            + [fmt(causes.get(cause, 0)) for cause in FALSE_POSITIVE_CAUSES]
            + [fmt(row.get("median_detection_delay_s"), 1)]
            + [_forward(forward.get(horizon_key(m))) for m in minutes],
        )
    return table(header, rows, css="data eval")


def trading_table(evaluation: dict) -> str:
    """The evaluation's per-strategy trading results ("" when no strategy traded)."""
    trading = evaluation.get("trading") or {}
    if not trading:
        return ""
    header = ("strategy", "algorithm", "orders", "closed positions", "open positions", "win rate",
              "win/loss ratio", "avg winner (USD)", "avg loser (USD)", "profit factor", "total realized P&L (USD)")
    rows = [
        (sid, ", ".join(e.get("algorithms") or []) or "-", fmt(e.get("orders")), fmt(e.get("positions")),
         fmt(e.get("open_positions")), fmt_pct(e.get("win_rate")), fmt(e.get("win_loss_ratio")),
         fmt(e.get("avg_winner_usd"), 2, True), fmt(e.get("avg_loser_usd"), 2, True), fmt(e.get("profit_factor")),
         fmt(e.get("total_realized_pnl_usd"), 2, True))
        for sid, e in trading.items()
    ]
    return table(header, rows, css="data eval")


def episodes_text(evaluation: dict) -> str:
    """"4 institutional, 2 mm_straddle, 1 volume_noise"."""
    episodes = evaluation.get("episodes") or {}
    return ", ".join(f"{episodes.get(kind, 0)} {kind}" for kind in EPISODE_KINDS)


def percentile_table(rows: dict[str, dict | None], unit: str) -> str:
    """n, p50, p90, p99, max per named distribution (e.g. feed and processing latency)."""
    header = ("measure", "n", f"p50 ({unit})", f"p90 ({unit})", f"p99 ({unit})", f"max ({unit})")
    body = [
        (name, fmt((d or {}).get("n"), thousands=True))
        + tuple(fmt((d or {}).get(k), 1, thousands=True) for k in ("p50", "p90", "p99", "max"))
        for name, d in rows.items()
    ]
    return table(header, body, css="data")


def alarms_table(alarms: list[dict]) -> str:
    """The monitors' alarms, in order ("" when none)."""
    if not alarms:
        return ""
    rows = [(str(a.get("ts", "")), str(a.get("level", "")), str(a.get("kind", "")), str(a.get("text", "")))
            for a in alarms if isinstance(a, dict)]
    return table(("time", "level", "kind", "text"), rows, caption=f"alarms ({len(rows)})", css="data")


def quality_summary(quality: dict) -> str:
    """The data-quality monitor's run totals."""
    flags = quality.get("flags") or {}
    stale = quality.get("stale_periods") or []
    expected = quality.get("instruments_expected")
    pairs = [
        ("records checked", fmt(quality.get("records"), thousands=True)),
        ("trades", fmt(quality.get("trades"), thousands=True)),
        ("instruments seen / expected", f"{fmt(quality.get('instruments_seen'))} / {fmt(expected)}"),
        ("completeness", fmt_pct(quality.get("completeness"))),
        ("sequence gaps", fmt(quality.get("sequence_gaps"), thousands=True)),
        ("records flagged maybe_bad_book", fmt(flags.get("maybe_bad_book"), thousands=True)),
        ("records flagged bad_ts_recv", fmt(flags.get("bad_ts_recv"), thousands=True)),
        ("crossed books (events)", fmt(quality.get("crossed_books"), thousands=True)),
        ("locked books (events)", fmt(quality.get("locked_books"), thousands=True)),
        ("stale periods", f"{len(stale)}, {fmt(sum(float(p.get('seconds') or 0) for p in stale), 1)} s in all"),
        ("aggressor / book agreement", (f"{fmt_pct(quality.get('agreement_rate'), 2)} of "
                                        f"{fmt(quality.get('agreement_checked'), thousands=True)} trades checked")),
        ("healthy at end", fmt(quality.get("healthy_at_end"))),
    ]
    return key_values(pairs)


def gaps_table(by_instrument: dict, limit: int = 10) -> str:
    """The instruments with the most sequence gaps ("" when none)."""
    items = sorted(((str(k), v) for k, v in (by_instrument or {}).items() if v), key=lambda kv: -float(kv[1]))
    if not items:
        return ""
    caption = f"sequence gaps by instrument (top {min(limit, len(items))} of {len(items)})"
    return table(("instrument", "gaps"), [(k, fmt(v, thousands=True)) for k, v in items[:limit]], caption)
