"""The report's Plotly figures, built from plain frames and dicts (no file access here).

Every data trace carries ``meta`` (``{"role": ..., "algorithm": ...}``) so the page test can find
it. Times are UTC, drawn at microsecond precision (what plotly.js resolves).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ifd.report.market_data import MarketData
from ifd.report.pressure_grid import KINDS
from ifd.report.pressure_grid import PressureGrid

ALGORITHM_STYLE = {  # colour and marker symbol per algorithm: v1 and v3 apart at a glance
    "ifd_v1": ("#e07b00", "circle"),
    "ifd_v3": ("#5b3fa8", "diamond"),
}
OTHER_STYLE = ("#7f7f7f", "square")
MAX_PRICE_POINTS = 20_000
TEMPLATE = "plotly_white"


def style_of(algorithm: str) -> tuple[str, str]:
    """(colour, marker symbol) of an algorithm's signals."""
    return ALGORITHM_STYLE.get(algorithm, OTHER_STYLE)


def to_times(ns) -> np.ndarray:
    """UTC nanoseconds as naive datetime64[us] (plotly.js draws naive times as given)."""
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[us]")


def ordered_algorithms(signals: pd.DataFrame) -> list[str]:
    """The signals' algorithms, v1 then v3 then any others."""
    names = set(signals["algorithm"].dropna().astype(str)) if len(signals) else set()
    known = [a for a in ALGORITHM_STYLE if a in names]
    return known + sorted(names - set(known))


def downsample_last(ts: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """At most about ``max_points`` points: the last value per equal time bucket. Returns the
    points and the bucket width in ns (0 when nothing was dropped)."""
    if ts.size <= max_points:
        return ts, values, 0
    width = max(1, int(np.ceil((int(ts[-1]) - int(ts[0]) + 1) / max_points)))
    bucket = (ts - ts[0]) // width
    last = np.flatnonzero(np.r_[bucket[1:] != bucket[:-1], True])
    return ts[last], values[last], width


def price_at(ts: np.ndarray, prices: np.ndarray, when: np.ndarray) -> np.ndarray:
    """The last trade price at or before each of ``when`` (the first price before any trade)."""
    idx = np.searchsorted(ts, when, side="right") - 1
    return prices[np.clip(idx, 0, ts.size - 1)]


def signal_hover(signals: pd.DataFrame) -> list[str]:
    """One hover text per signal: what, when, how sure, how big, and the detector's reasons."""
    def text(row) -> str:
        latency = row.latency_ns
        latency_text = "-" if pd.isna(latency) else f"{float(latency) / 1000:,.1f} µs"
        return "<br>".join(
            [
                (f"<b>{html.escape(str(row.algorithm))}</b> {html.escape(str(row.side))} "
                 f"{html.escape(str(row.instrument_id))} ({html.escape(str(row.bias))})"),
                f"signal {pd.Timestamp(int(row.ts_signal), unit='ns').strftime('%H:%M:%S.%f')} UTC",
                f"confidence {float(row.confidence):.2f} · premium ${float(row.notional_usd):,.0f}",
                (f"strategy {html.escape(str(row.strategy_id))} ({html.escape(str(row.mode))})"
                 + (" · <b>entered a trade</b>" if bool(row.acted) else "")),
                f"processing latency {latency_text}",
                "reasons: " + html.escape(str(row.reasons or "-")),
            ],
        )

    return [text(row) for row in signals.itertuples(index=False)]


def _signal_frame(signals: pd.DataFrame) -> pd.DataFrame:
    frame = signals.copy()
    if "ts_signal" not in frame.columns:
        frame["ts_signal"] = frame["ts_event"]
    frame["ts_signal"] = frame["ts_signal"].fillna(frame["ts_event"]).astype(np.int64)
    frame["acted"] = frame["acted"].fillna(False).astype(bool)
    return frame.sort_values("ts_signal", kind="stable")


def price_signals_figure(market: MarketData, signals: pd.DataFrame, max_points: int = MAX_PRICE_POINTS) -> go.Figure:
    """The underlying's trade price with one marker trace per algorithm (shape and colour per
    algorithm, size by confidence, a black outline where the signal entered a trade). Without
    price data the markers sit at the option's strike."""
    fig = go.Figure()
    trades = market.underlying_trades
    has_price = len(trades) > 0
    ts = trades["ts_event"].to_numpy(dtype=np.int64)
    prices = trades["price"].to_numpy(dtype=np.float64)
    if has_price:
        x, y, width = downsample_last(ts, prices, max_points)
        label = f"{market.underlying} last trade" + (f" per {width / 1e9:.3g} s" if width else "")
        fig.add_trace(
            go.Scatter(
                x=to_times(x), y=y, mode="lines", name=label, line={"color": "#4d4d4d", "width": 1},
                hovertemplate="%{x|%H:%M:%S.%L} UTC<br>%{y:,.2f}<extra></extra>", meta={"role": "price"},
            ),
        )
    frame = _signal_frame(signals)
    for algorithm in ordered_algorithms(frame):
        own = frame[frame["algorithm"].astype(str) == algorithm]
        when = own["ts_signal"].to_numpy(dtype=np.int64)
        y = price_at(ts, prices, when) if has_price else own["strike"].to_numpy(dtype=np.float64)
        confidence = own["confidence"].fillna(0).clip(0, 1).to_numpy(dtype=np.float64)
        colour, symbol = style_of(algorithm)
        acted = own["acted"].to_numpy()
        fig.add_trace(
            go.Scatter(
                x=to_times(when), y=y, mode="markers", name=f"{algorithm} signals ({len(own)})",
                marker={
                    "symbol": symbol, "color": colour, "size": 8 + 22 * confidence, "opacity": 0.85,
                    "line": {"color": np.where(acted, "#000000", "#ffffff"), "width": np.where(acted, 2.5, 1)},
                },
                hovertext=signal_hover(own), hoverinfo="text", meta={"role": "signals", "algorithm": algorithm},
            ),
        )
    y_title = f"{market.underlying} price (index points)" if has_price else "option strike (no price data)"
    fig.update_layout(
        template=TEMPLATE, height=480, margin={"t": 40, "b": 40, "l": 70, "r": 20},
        xaxis_title="time (UTC)", yaxis_title=y_title, hovermode="closest",
        legend={"orientation": "h", "y": 1.08, "x": 0},
    )
    return fig


def pressure_figure(grid: PressureGrid, signals: pd.DataFrame) -> go.Figure:
    """Calls and puts side by side: strike (y) by time bucket (x), coloured by the signed
    buy/sell imbalance of the contracts traded (blue bought, red sold); signals on top."""
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
        subplot_titles=("calls", "puts"),
    )
    edges = to_times(np.r_[grid.bucket_starts_ns, grid.bucket_starts_ns[-1:] + grid.bucket_ns])
    minutes = grid.bucket_ns / 60e9
    for col, kind in enumerate(KINDS, start=1):
        fig.add_trace(
            go.Heatmap(
                x=edges, y=grid.strikes, z=grid.imbalance[kind], zmin=-1, zmax=1, colorscale="RdBu",
                customdata=np.dstack([grid.buy[kind], grid.sell[kind]]),
                hovertemplate=(
                    f"{kind.lower()} %{{y:.2~f}}<br>{minutes:g} min bucket centred on %{{x|%H:%M:%S}} UTC<br>"
                    "(buy - sell) / (buy + sell) = %{z:.2f}<br>"
                    "bought %{customdata[0]:,.0f} · sold %{customdata[1]:,.0f} contracts<extra></extra>"
                ),
                showscale=col == 1,
                colorbar={"title": {"text": "sell ← → buy", "side": "right"}, "len": 0.9},
                name=f"{kind.lower()} pressure", meta={"role": "pressure", "kind": kind},
            ),
            row=1, col=col,
        )
    frame = _signal_frame(signals)
    for algorithm in ordered_algorithms(frame):
        colour, symbol = style_of(algorithm)
        for col, kind in enumerate(KINDS, start=1):
            own = frame[(frame["algorithm"].astype(str) == algorithm) & (frame["option_kind"].astype(str) == kind)]
            fig.add_trace(
                go.Scatter(
                    x=to_times(own["ts_signal"].to_numpy(dtype=np.int64)), y=own["strike"].to_numpy(dtype=np.float64),
                    mode="markers", name=f"{algorithm} signals", legendgroup=algorithm, showlegend=col == 1,
                    marker={"symbol": symbol + "-open", "color": colour, "size": 12, "line": {"width": 2.5}},
                    hovertext=signal_hover(own), hoverinfo="text",
                    meta={"role": "pressure_signals", "algorithm": algorithm, "kind": kind},
                ),
                row=1, col=col,
            )
    fig.update_layout(
        template=TEMPLATE, height=max(380, 100 + 18 * grid.strikes.size), margin={"t": 70, "b": 40, "l": 70, "r": 20},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 1, "xanchor": "right"},
    )
    fig.update_yaxes(title_text="strike (index points)", row=1, col=1)
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def realized_pnl_steps(positions: pd.DataFrame) -> pd.DataFrame:
    """Closed positions' realized P&L in USD: ``strategy_id, ts_closed_ns, pnl_usd``, by close time."""
    columns = {"strategy_id": pd.Series([], dtype=object), "ts_closed_ns": pd.Series([], dtype=np.int64),
               "pnl_usd": pd.Series([], dtype=np.float64)}
    if positions.empty or not {"strategy_id", "side", "realized_pnl", "ts_closed"} <= set(positions.columns):
        return pd.DataFrame(columns)
    closed = positions[positions["side"].astype(str).str.upper().eq("FLAT")]
    parts = closed["realized_pnl"].fillna("").astype(str).str.strip().str.split(" ", n=1)
    amount = pd.to_numeric(parts.str[0].str.replace(",", "", regex=False), errors="coerce")
    usd = parts.str[1].fillna("").str.strip().eq("USD")
    when = pd.to_datetime(closed["ts_closed"], utc=True, errors="coerce")
    keep = usd & amount.notna() & when.notna()
    frame = pd.DataFrame(
        {
            "strategy_id": closed.loc[keep, "strategy_id"].astype(str),
            "ts_closed_ns": (when[keep] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ns"),
            "pnl_usd": amount[keep].astype(np.float64),
        },
    )
    return frame.sort_values("ts_closed_ns", kind="stable", ignore_index=True)


def equity_figure(
    steps: pd.DataFrame, strategies: dict[str, str], start_ns: int | None, end_ns: int | None,
) -> go.Figure:
    """Cumulative realized P&L (USD) per strategy as step lines from the run's start to its end,
    a marker at each close; ``strategies`` maps strategy id -> algorithm (a strategy without a
    closed position stays at 0)."""
    fig = go.Figure()
    for sid in list(strategies) + sorted(set(steps["strategy_id"]) - set(strategies)):
        own = steps[steps["strategy_id"] == sid]
        algorithm = strategies.get(sid, "")
        ts = own["ts_closed_ns"].to_numpy(dtype=np.int64)
        pnl = own["pnl_usd"].to_numpy(dtype=np.float64).cumsum()
        final = float(pnl[-1]) if pnl.size else 0.0
        first = start_ns if start_ns is not None else (int(ts[0]) if ts.size else 0)
        last = end_ns if end_ns is not None else (int(ts[-1]) if ts.size else first)
        x = np.r_[first, ts, last].astype(np.int64)
        y = np.r_[0.0, pnl, final]
        sizes = np.r_[0, np.full(ts.size, 8), 0]
        fig.add_trace(
            go.Scatter(
                x=to_times(x), y=y, mode="lines+markers",
                line={"shape": "hv", "color": style_of(algorithm)[0], "width": 2},
                marker={"size": sizes}, name=f"{algorithm or sid}: {ts.size} closed, {final:+,.2f} USD",
                hovertemplate="%{x|%H:%M:%S} UTC<br>cumulative realized %{y:+,.2f} USD<extra>"
                + html.escape(sid) + "</extra>",
                meta={"role": "equity", "algorithm": algorithm, "strategy_id": sid, "closed": int(ts.size)},
            ),
        )
    fig.update_layout(
        template=TEMPLATE, height=360, margin={"t": 30, "b": 40, "l": 70, "r": 20},
        xaxis_title="time (UTC)", yaxis_title="cumulative realized P&L (USD)",
        legend={"orientation": "h", "y": 1.12, "x": 0},
    )
    return fig


def _per_minute(rows, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows or [])
    if frame.empty or "minute" not in frame.columns:
        return pd.DataFrame()
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame.columns else np.nan
    frame["time"] = pd.to_datetime(frame["minute"], utc=True, errors="coerce").dt.tz_localize(None)
    return frame.dropna(subset=["time"]).sort_values("time")


def quality_figure(quality: dict) -> go.Figure | None:
    """Per minute: records and trades (bars, top) and the problems counted (bottom); stale
    periods shaded. None when ``per_minute`` is empty."""
    counts, problems = ["records", "trades"], ["gaps", "flagged", "crossed", "locked"]
    frame = _per_minute(quality.get("per_minute"), counts + problems)
    if frame.empty:
        return None
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45])
    for name, colour in zip(counts, ("#9ecae1", "#3182bd"), strict=True):
        fig.add_trace(go.Bar(x=frame["time"], y=frame[name], name=f"{name} per minute", marker_color=colour,
                             meta={"role": "quality", "series": name}), row=1, col=1)
    labels = {"gaps": "sequence gaps", "flagged": "flagged records", "crossed": "crossed books",
              "locked": "locked books"}
    for name in problems:
        fig.add_trace(go.Scatter(x=frame["time"], y=frame[name], mode="lines+markers", name=labels[name],
                                 meta={"role": "quality", "series": name}), row=2, col=1)
    last = frame["time"].max() + pd.Timedelta(minutes=1)
    for period in quality.get("stale_periods") or []:
        start = pd.to_datetime(period.get("start"), utc=True, errors="coerce")
        end = pd.to_datetime(period.get("end"), utc=True, errors="coerce")  # None: still stale at the end
        if pd.notna(start):
            fig.add_vrect(x0=start.tz_localize(None), x1=end.tz_localize(None) if pd.notna(end) else last,
                          fillcolor="#fdae6b", opacity=0.3, line_width=0, row="all", col=1)
    fig.update_layout(template=TEMPLATE, height=440, barmode="group", margin={"t": 30, "b": 40, "l": 70, "r": 20},
                      legend={"orientation": "h", "y": 1.1, "x": 0})
    fig.update_yaxes(title_text="count per minute", row=1, col=1)
    fig.update_yaxes(title_text="problems per minute", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return fig


def latency_figure(latency: dict) -> go.Figure | None:
    """Per minute: feed and processing latency percentiles (µs; log scale unless a value is 0,
    e.g. a backtest's feed latency). None when ``per_minute`` is empty."""
    series = {
        "feed_p50_us": ("feed p50", "#74c476", "dot"),
        "feed_p99_us": ("feed p99", "#238b45", "solid"),
        "proc_p50_us": ("processing p50", "#9e9ac8", "dot"),
        "proc_p99_us": ("processing p99", "#6a51a3", "solid"),
        "proc_max_us": ("processing max", "#bcbddc", "dash"),
    }
    frame = _per_minute(latency.get("per_minute"), list(series))
    if frame.empty:
        return None
    fig = go.Figure()
    for column, (label, colour, dash) in series.items():
        if frame[column].notna().any():
            fig.add_trace(go.Scatter(x=frame["time"], y=frame[column], mode="lines+markers", name=label,
                                     line={"color": colour, "dash": dash}, meta={"role": "latency", "series": column}))
    clock = str(latency.get("clock") or "unknown")
    values = frame[list(series)].to_numpy(dtype=np.float64)
    log = bool(np.all(values[~np.isnan(values)] > 0))
    fig.update_layout(
        template=TEMPLATE, height=360, margin={"t": 30, "b": 40, "l": 70, "r": 20},
        xaxis_title="time (UTC)", yaxis_title=f"latency (µs, {clock} clock)", yaxis_type="log" if log else "linear",
        legend={"orientation": "h", "y": 1.12, "x": 0},
    )
    return fig


def signal_latency_figure(signals: pd.DataFrame) -> go.Figure | None:
    """Each signal's processing latency (``latency_ns`` in signals.parquet) per algorithm, in µs.
    None when no signal has one."""
    frame = signals[signals["latency_ns"].notna()] if "latency_ns" in signals.columns else signals.iloc[0:0]
    if frame.empty:
        return None
    fig = go.Figure()
    for algorithm in ordered_algorithms(frame):
        own = frame[frame["algorithm"].astype(str) == algorithm]
        colour = style_of(algorithm)[0]
        fig.add_trace(
            go.Box(
                y=own["latency_ns"].to_numpy(dtype=np.float64) / 1000, name=f"{algorithm} ({len(own)})",
                boxpoints="all", jitter=0.4, pointpos=0, marker={"color": colour, "size": 5}, line={"color": colour},
                hovertemplate="%{y:,.1f} µs<extra></extra>", meta={"role": "signal_latency", "algorithm": algorithm},
            ),
        )
    fig.update_layout(template=TEMPLATE, height=320, margin={"t": 30, "b": 40, "l": 70, "r": 20},
                      yaxis_title="signal processing latency (µs)", showlegend=False)
    return fig
