"""``ifd evaluate``: score a backtest run's signals against a scenario's labels.

``evaluate_run(run_dir, labels_path)`` reads the run folder (``summary.json``,
``signals.parquet``, ``positions.csv``), the scenario's ``labels.parquet`` and the run's catalog,
and returns one object per algorithm (the run's IFD algorithms and the naive reference
detector, ``naive_net_premium``) with precision, recall and F1 under the matching rule of
``ifd.evaluation.matching``, false positives by cause, detection delays, signal counts,
forward-move accuracy of the underlying future and, for strategies that placed orders, their
trading results. ``write_evaluation`` writes it as ``evaluation.json`` and ``evaluation.md``
into the run folder. ``aggregate`` pools several runs (seeds) for a study.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.layout import DATA_DIR
from catalogs.layout import check_catalog_path
from ifd.detection.types import BUY
from ifd.detection.types import SELL
from ifd.detection.types import bias_of
from ifd.errors import IfdError
from ifd.evaluation import matching
from ifd.evaluation.forward import forward_accuracy
from ifd.evaluation.forward import future_prices
from ifd.evaluation.forward import horizon_key
from ifd.evaluation.matching import FALSE_POSITIVE_CAUSES
from ifd.evaluation.matching import match_signals
from ifd.evaluation.matching import score
from ifd.evaluation.naive import ALGORITHM as NAIVE
from ifd.evaluation.naive import BUCKET_NS
from ifd.evaluation.naive import THRESHOLD_USD
from ifd.evaluation.naive import naive_signals
from ifd.evaluation.ticks import catalog_instruments
from ifd.evaluation.ticks import read_trades
from ifd.evaluation.trading_stats import pnl_stats
from ifd.evaluation.trading_stats import pooled_stats
from ifd.evaluation.trading_stats import read_positions
from ifd.evaluation.trading_stats import strategy_trading

SIGNALS_FILE = "signals.parquet"
SUMMARY_FILE = "summary.json"
POSITIONS_FILE = "positions.csv"
EVALUATION_JSON = "evaluation.json"
EVALUATION_MD = "evaluation.md"
IFD_ALGORITHMS = ("ifd_v1", "ifd_v3")
SIGNAL_REQUIRED = ("ts_event", "algorithm", "instrument_id", "side")
LABEL_REQUIRED = ("episode_id", "kind", "instrument_ids", "side", "start_ns", "end_ns")
EPISODE_KINDS = ("institutional", "mm_straddle", "volume_noise")
DEFAULT_FORWARD_MINUTES = (5, 15)
_COUNT_KEYS = ("signals", "true_positive_signals", "episodes", "episodes_detected", "false_positives")


def matching_rule_text(tolerance_s: float | None = None) -> str:
    """The matching rule in plain words, taken from ``ifd.evaluation.matching``'s docstring."""
    paragraphs = [p for p in (matching.__doc__ or "").split("\n\n") if p.strip()]
    text = " ".join(" ".join(paragraphs[1:] if len(paragraphs) > 1 else paragraphs).split()).replace("``", "")
    if tolerance_s is not None:
        text += f" The tolerance is {float(tolerance_s):g} s."
    return text


# -- inputs -----------------------------------------------------------------------------------


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise IfdError(f"{path}: not a {what} (unreadable as Parquet: {exc})") from exc


def load_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise IfdError(f"{run_dir}: not a run folder (no {SUMMARY_FILE})")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IfdError(f"{path}: not a run summary (bad JSON: {exc})") from exc
    if not isinstance(summary, dict):
        raise IfdError(f"{path}: not a run summary (expected a JSON object)")
    return summary


def load_signals(run_dir: Path) -> pd.DataFrame:
    """The run's signals (zero rows is valid); ``ts_event`` as int64, ``bias`` filled in when absent."""
    path = Path(run_dir) / SIGNALS_FILE
    if not path.is_file():
        raise IfdError(f"{path}: no signals file in the run folder (the run's strategies wrote no signals table)")
    frame = _read_parquet(path, "signals table")
    missing = [c for c in SIGNAL_REQUIRED if c not in frame.columns]
    if missing:
        raise IfdError(f"{path}: not a signals table (missing columns: {', '.join(missing)})")
    return _normalize_signals(frame, path)


def _normalize_signals(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.reset_index(drop=True).copy()
    try:
        frame["ts_event"] = frame["ts_event"].astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise IfdError(f"{path}: not a signals table (ts_event must be integer nanoseconds: {exc})") from exc
    for column in ("algorithm", "instrument_id", "side"):
        frame[column] = frame[column].astype(object)
    frame["side"] = frame["side"].astype(str).str.upper()
    for column, default in (("strategy_id", ""), ("mode", ""), ("underlying", ""), ("option_kind", "")):
        if column not in frame.columns:
            frame[column] = default
        frame[column] = frame[column].fillna(default).astype(object)
    if "bias" not in frame.columns:
        frame["bias"] = ""
    frame["bias"] = frame["bias"].fillna("").astype(object)
    need = (
        frame["bias"].eq("") & frame["option_kind"].isin(["CALL", "PUT", "FUT"]) & frame["side"].isin(["BUY", "SELL"])
    )
    if need.any():
        frame.loc[need, "bias"] = [
            bias_of(kind, BUY if side == "BUY" else SELL)
            for kind, side in zip(frame.loc[need, "option_kind"], frame.loc[need, "side"], strict=True)
        ]
    return frame


def load_labels(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise IfdError(f"{path}: no such labels file")
    frame = _read_parquet(path, "labels table")
    missing = [c for c in LABEL_REQUIRED if c not in frame.columns]
    if missing:
        raise IfdError(f"{path}: not a labels table (missing columns: {', '.join(missing)})")
    frame = frame.copy()
    frame["start_ns"] = frame["start_ns"].astype(np.int64)
    frame["end_ns"] = frame["end_ns"].astype(np.int64)
    frame["instrument_ids"] = frame["instrument_ids"].map(lambda ids: [str(i) for i in ids] if ids is not None else [])
    return frame


def _catalog_path(summary: dict, run_dir: Path, catalog: Path | None) -> Path:
    if catalog is None:
        value = summary.get("catalog")
        if not value:
            raise IfdError(f"{Path(run_dir) / SUMMARY_FILE}: names no catalog (pass the catalog)")
        catalog = Path(value)
    catalog = Path(catalog)
    if not catalog.is_dir():
        raise IfdError(
            f"{catalog}: no such catalog (the run's data is needed for the naive detector and forward moves)"
        )
    root = check_catalog_path(catalog, create=False)
    if not (root / DATA_DIR).is_dir():
        raise IfdError(f"{root}: not a NautilusTrader catalog (no '{DATA_DIR}' folder)")
    return root


def _replayed_range(summary: dict) -> tuple[int | None, int | None]:
    """The run's replayed time range (ns) from summary.json, None where open."""
    bounds = []
    for key in ("backtest_start", "backtest_end"):
        value = summary.get(key)
        bounds.append(int(pd.Timestamp(int(value) if str(value).isdigit() else value).value) if value else None)
    return bounds[0], bounds[1]


def _strategy_algorithms(summary: dict, signals: pd.DataFrame) -> dict[str, list[str]]:
    """Strategy id -> the algorithms it runs (its results' ``algorithm``/``algorithms``, else the
    algorithms of its signals)."""
    out: dict[str, list[str]] = {}
    for sid, entry in (summary.get("strategies") or {}).items():
        results = entry.get("results") if isinstance(entry, dict) else None
        names: list[str] = []
        if isinstance(results, dict):
            for key in ("algorithm", "algorithms"):
                value = results.get(key)
                if isinstance(value, str) and value:
                    names.append(value)
                elif isinstance(value, (list, tuple)):
                    names.extend(str(v) for v in value if v)
        if not names and "strategy_id" in signals.columns:
            names = sorted(set(signals.loc[signals["strategy_id"] == sid, "algorithm"].astype(str)))
        out[sid] = list(dict.fromkeys(names))
    return out


def _ordered(names: Iterable[str]) -> list[str]:
    names = set(names)
    first = [a for a in IFD_ALGORITHMS if a in names]
    return first + sorted(names - set(first) - {NAIVE})


# -- scoring ----------------------------------------------------------------------------------


def detection_delays(signals: pd.DataFrame, labels: pd.DataFrame, tolerance_ns: int) -> list[float]:
    """Seconds from each detected institutional episode's start to its first hit (the delays
    whose median ``score`` reports), in episode order."""
    matched = match_signals(signals, labels, tolerance_ns)
    hits = matched[matched["episode_id"] >= 0]
    if hits.empty:
        return []
    first = hits.groupby("episode_id")["ts_event"].min()
    starts = labels.set_index("episode_id")["start_ns"].reindex(first.index)
    return [round(float(d), 3) for d in ((first - starts) / 1e9).tolist()]


def evaluate_signals(
    algorithm: str,
    signals: pd.DataFrame,
    labels: pd.DataFrame,
    tolerance_ns: int,
    prices: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    forward_minutes: tuple[int, ...] = DEFAULT_FORWARD_MINUTES,
) -> dict:
    """One algorithm's object: ``score`` (matching.py) plus delays, signal counts and forward accuracy.

    Identical signals (same instrument, ``ts_event`` and side) emitted by several strategies
    running the same algorithm count once.
    """
    raw = signals.reset_index(drop=True)
    unique = raw.drop_duplicates(["instrument_id", "ts_event", "side"]).reset_index(drop=True)
    result = {"algorithm": algorithm}
    result.update(score(unique[["ts_event", "instrument_id", "side"]], labels, tolerance_ns))
    result["signals_raw"] = len(raw)
    result["duplicate_signals"] = len(raw) - len(unique)
    result["signals_by_mode"] = _counts(raw, "mode")
    result["signals_by_strategy"] = _counts(raw, "strategy_id")
    result["signals_by_side"] = _counts(unique, "side")
    if "acted" in raw.columns:
        result["signals_acted"] = int(raw["acted"].fillna(False).astype(bool).sum())
    result["detection_delays_s"] = detection_delays(unique[["ts_event", "instrument_id", "side"]], labels, tolerance_ns)
    result["forward_accuracy"] = forward_accuracy(unique, prices or {}, tuple(forward_minutes))
    return result


def _counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    if column not in frame.columns or frame.empty:
        return {}
    values = frame[column].fillna("").astype(str)
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items() if k != ""}


def evaluate_run(
    run_dir: Path,
    labels_path: Path,
    tolerance_s: float = 60,
    forward_minutes: tuple[int, ...] = DEFAULT_FORWARD_MINUTES,
    catalog: Path | None = None,
) -> dict:
    """Score a run folder's signals (and the naive reference detector) against ``labels_path``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise IfdError(f"{run_dir}: no such run folder")
    if not tolerance_s >= 0 or math.isinf(tolerance_s):
        raise IfdError(f"tolerance {tolerance_s}: must be a finite number of seconds >= 0")
    forward_minutes = tuple(int(m) for m in forward_minutes)
    if any(m <= 0 for m in forward_minutes):
        raise IfdError(f"forward minutes {forward_minutes}: each must be > 0")
    summary = load_summary(run_dir)
    signals = load_signals(run_dir)
    labels = load_labels(labels_path)
    catalog_root = _catalog_path(summary, run_dir, catalog)
    tolerance_ns = round(tolerance_s * 1e9)

    instruments = catalog_instruments(catalog_root)
    options = instruments[instruments["kind"].isin(["CALL", "PUT"])]
    futures = instruments[instruments["kind"] == "FUT"]
    trades = read_trades(catalog_root, instruments["instrument_id"].tolist())
    prices = future_prices(trades[trades["instrument_id"].isin(futures["instrument_id"])], instruments)
    # Signals without an underlying take their option's, from the catalog.
    underlying_of = dict(zip(options["instrument_id"], options["underlying"], strict=True))
    blank = signals["underlying"].astype(str).eq("")
    if blank.any():
        signals.loc[blank, "underlying"] = signals.loc[blank, "instrument_id"].map(underlying_of).fillna("")

    strategy_algos = _strategy_algorithms(summary, signals)
    named = set(signals["algorithm"].dropna().astype(str)) | {a for v in strategy_algos.values() for a in v}
    algorithms = _ordered(a for a in named if a.strip())

    result: dict = {
        "run_dir": str(run_dir),
        "run": run_dir.name,
        "name": summary.get("name"),
        "labels": str(labels_path),
        "catalog": str(catalog_root),
        "tolerance_s": float(tolerance_s),
        "forward_minutes": list(forward_minutes),
        "matching_rule": matching_rule_text(tolerance_s),
        "episodes": {kind: int((labels["kind"] == kind).sum()) for kind in EPISODE_KINDS},
        "algorithms": algorithms + [NAIVE],
    }
    for algorithm in algorithms:
        own = signals[signals["algorithm"].astype(str) == algorithm]
        result[algorithm] = evaluate_signals(algorithm, own, labels, tolerance_ns, prices, forward_minutes)

    # The reference sees what the run replayed: the catalog may hold other days (history).
    option_trades = trades[trades["instrument_id"].isin(options["instrument_id"])]
    first, last = _replayed_range(summary)
    if first is not None:
        option_trades = option_trades[option_trades["ts_event"] >= first]
    if last is not None:
        option_trades = option_trades[option_trades["ts_event"] <= last]
    naive = naive_signals(option_trades, instruments)
    result[NAIVE] = evaluate_signals(NAIVE, naive, labels, tolerance_ns, prices, forward_minutes)
    result["replayed"] = {"start_ns": first, "end_ns": last}
    result[NAIVE]["threshold_usd"] = THRESHOLD_USD
    result[NAIVE]["bucket_s"] = BUCKET_NS // 1_000_000_000

    trading = _trading(run_dir, summary, strategy_algos)
    result["trading"] = trading
    for algorithm in algorithms:
        result[algorithm]["trading"] = {sid: e for sid, e in trading.items() if algorithm in e["algorithms"]}
    return _jsonable(result)


def _trading(run_dir: Path, summary: dict, strategy_algos: dict[str, list[str]]) -> dict[str, dict]:
    """Per strategy that placed orders (or holds positions): its trading results."""
    per_strategy = strategy_trading(read_positions(Path(run_dir) / POSITIONS_FILE))
    strategies = summary.get("strategies") or {}
    out = {}
    for sid in sorted(
        set(per_strategy) | {s for s, e in strategies.items() if isinstance(e, dict) and e.get("orders")}
    ):
        entry = {"strategy_id": sid, "algorithms": strategy_algos.get(sid, [])}
        entry["orders"] = int((strategies.get(sid) or {}).get("orders", 0) or 0)
        stats = per_strategy.get(sid)
        if stats is None:  # orders but no position (none filled)
            stats = {**pnl_stats([]), "open_positions": 0, "other_currency_positions": 0}
        entry.update(stats)
        out[sid] = entry
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    return value


# -- output -----------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_evaluation(run_dir: Path, result: dict) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.md`` into the run folder (each atomically)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise IfdError(f"{run_dir}: no such run folder")
    json_path, md_path = run_dir / EVALUATION_JSON, run_dir / EVALUATION_MD
    _atomic_write(json_path, json.dumps(_jsonable(result), indent=2) + "\n")
    _atomic_write(md_path, render_markdown(result))
    return json_path, md_path


def write_study(out_dir: Path, study: dict, stem: str = "study") -> tuple[Path, Path]:
    """Write an ``aggregate`` result as ``<stem>.json`` and ``<stem>.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    _atomic_write(json_path, json.dumps(_jsonable(study), indent=2) + "\n")
    _atomic_write(md_path, render_aggregate_markdown(study))
    return json_path, md_path


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _forward_cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    return f"{_num(entry.get('accuracy'), 3)} ({entry.get('count', 0)})"


def _detection_table(result: dict, minutes: list[int]) -> list[str]:
    header = [
        "algorithm",
        "precision",
        "recall",
        "F1",
        "signals",
        "episodes detected",
        "FP mm_straddle",
        "FP volume_noise",
        "FP wrong side",
        "FP unlabeled",
        "median delay (s)",
    ] + [f"fwd {m}m accuracy (n)" for m in minutes]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name in result.get("algorithms", []):
        row = result.get(name)
        if not row:
            continue
        fp = row.get("false_positives_by_cause", {})
        cells = [
            f"`{name}`",
            _num(row.get("precision")),
            _num(row.get("recall")),
            _num(row.get("f1")),
            str(row.get("signals", 0)),
            f"{row.get('episodes_detected', 0)} / {row.get('episodes', 0)}",
            str(fp.get("mm_straddle", 0)),
            str(fp.get("volume_noise", 0)),
            str(fp.get("institutional_wrong_side", 0)),
            str(fp.get("unlabeled", 0)),
            _num(row.get("median_detection_delay_s"), 1),
        ] + [_forward_cell(row.get("forward_accuracy", {}).get(horizon_key(m))) for m in minutes]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_TRADING_STATS = (
    ("closed positions", "positions", None),
    ("win rate", "win_rate", 3),
    ("win/loss ratio", "win_loss_ratio", 3),
    ("avg winner (USD)", "avg_winner_usd", 2),
    ("avg loser (USD)", "avg_loser_usd", 2),
    ("profit factor", "profit_factor", 3),
    ("total realized P&L (USD)", "total_realized_pnl_usd", 2),
)


def _trading_table(rows: dict[str, dict], pooled: bool = False) -> list[str]:
    """Per strategy (or, pooled, per algorithm) trading results."""
    lead = ["algorithm"] if pooled else ["strategy", "algorithm", "orders"]
    header = lead + [title for title, _, _ in _TRADING_STATS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key, e in rows.items():
        cells = (
            [f"`{key}`"]
            if pooled
            else [f"`{key}`", ", ".join(e.get("algorithms") or []) or "-", str(e.get("orders", 0))]
        )
        for _, field, digits in _TRADING_STATS:
            value = e.get(field)
            cells.append(str(value if value is not None else 0) if digits is None else _num(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(result: dict) -> str:
    """``evaluation.md``: the detection table, the matching rule and the trading table."""
    minutes = result.get("forward_minutes", list(DEFAULT_FORWARD_MINUTES))
    episodes = result.get("episodes", {})
    lines = [
        f"# Evaluation: {result.get('run', '')}",
        "",
        f"- run folder: `{result.get('run_dir', '')}`",
        f"- labels: `{result.get('labels', '')}`",
        f"- catalog: `{result.get('catalog', '')}`",
        "- episodes: " + ", ".join(f"{episodes.get(k, 0)} {k}" for k in EPISODE_KINDS),
        f"- tolerance: {float(result.get('tolerance_s') or 0):g} s",
        "",
        "## Detection",
        "",
        *_detection_table(result, minutes),
        "",
        (
            "Precision counts signals, recall counts institutional episodes; F1 is their harmonic mean. "
            "FP columns are false-positive signals by the labeled episode they fall on. Forward accuracy: "
            "share of signals whose bias matched the sign of the underlying future's move over N minutes "
            f"(n: signals with a non-zero move and prices available). `{NAIVE}` is the reference detector "
            f"(net aggressor premium per option per 5-minute bucket reaching ${THRESHOLD_USD:,.0f})."
        ),
        "",
        "## Matching rule",
        "",
        result.get("matching_rule", matching_rule_text(result.get("tolerance_s"))),
        "",
    ]
    trading = result.get("trading") or {}
    if trading:
        lines += ["## Trading", "", *_trading_table(trading), ""]
    return "\n".join(lines)


# -- multi-seed study -------------------------------------------------------------------------


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _pool_algorithm(name: str, rows: list[dict]) -> dict:
    pooled: dict = {"algorithm": name, "runs": len(rows)}
    for key in _COUNT_KEYS:
        pooled[key] = int(sum(r.get(key, 0) for r in rows))
    precision = pooled["true_positive_signals"] / pooled["signals"] if pooled["signals"] else 0.0
    recall = pooled["episodes_detected"] / pooled["episodes"] if pooled["episodes"] else 0.0
    pooled["precision"] = round(precision, 4)
    pooled["recall"] = round(recall, 4)
    pooled["f1"] = round(_f1(precision, recall), 4)
    pooled["false_positives_by_cause"] = {
        cause: int(sum(r.get("false_positives_by_cause", {}).get(cause, 0) for r in rows))
        for cause in FALSE_POSITIVE_CAUSES
    }
    delays = [d for r in rows for d in r.get("detection_delays_s", [])]
    pooled["median_detection_delay_s"] = round(float(statistics.median(delays)), 3) if delays else None
    pooled["detection_delays_s"] = delays
    f1s = [float(r.get("f1", 0.0)) for r in rows]
    pooled["f1_per_run_mean"] = round(statistics.fmean(f1s), 4) if f1s else None
    pooled["f1_per_run_std"] = round(statistics.stdev(f1s), 4) if len(f1s) > 1 else None
    forward: dict[str, dict] = {}
    for r in rows:
        for key, entry in (r.get("forward_accuracy") or {}).items():
            acc = forward.setdefault(
                key, {"minutes": entry.get("minutes"), "count": 0, "correct": 0, "zero_move": 0, "unavailable": 0}
            )
            for k in ("count", "correct", "zero_move", "unavailable"):
                acc[k] += int(entry.get(k, 0))
    for entry in forward.values():
        entry["accuracy"] = round(entry["correct"] / entry["count"], 4) if entry["count"] else None
    pooled["forward_accuracy"] = {k: forward[k] for k in sorted(forward, key=lambda k: forward[k]["minutes"] or 0)}
    trading = [e for r in rows for e in (r.get("trading") or {}).values()]
    if trading:
        pooled["trading"] = pooled_stats(trading)
    return pooled


def aggregate(results: list[dict]) -> dict:
    """Pool several ``evaluate_run`` results (e.g. one per seed): counts are summed and
    precision, recall and F1 recomputed from the pooled counts; per-run rows are kept.

    A run's row is named by its ``seed`` key when the caller set one, else by its run name.
    An algorithm missing from a run is pooled over the runs that have it.
    """
    if not results:
        raise IfdError("study: no evaluation results to aggregate")
    tolerances = {float(r.get("tolerance_s", 0)) for r in results}
    if len(tolerances) > 1:
        raise IfdError(
            f"study: runs were scored with different tolerances ({', '.join(f'{t:g}' for t in sorted(tolerances))} s)"
        )
    tolerance = tolerances.pop()
    names: list[str] = []
    for r in results:
        names.extend(a for a in r.get("algorithms", []) if a not in names)
    names = _ordered(names) + ([NAIVE] if NAIVE in names else [])
    minutes = sorted({m for r in results for m in r.get("forward_minutes", [])})
    study: dict = {
        "runs": len(results),
        "tolerance_s": tolerance,
        "forward_minutes": minutes,
        "matching_rule": matching_rule_text(tolerance),
        "episodes": {k: int(sum(r.get("episodes", {}).get(k, 0) for r in results)) for k in EPISODE_KINDS},
        "algorithms": names,
    }
    for name in names:
        study[name] = _pool_algorithm(name, [r[name] for r in results if name in r])
    per_run = []
    for r in results:
        row = {
            "run": r.get("run"),
            "seed": r.get("seed"),
            "run_dir": r.get("run_dir"),
            "labels": r.get("labels"),
            "episodes": r.get("episodes", {}),
        }
        for name in names:
            if name in r:
                row[name] = {
                    k: r[name].get(k) for k in ("precision", "recall", "f1", "signals", "episodes_detected", "episodes")
                }
        per_run.append(row)
    study["per_run"] = per_run
    return _jsonable(study)


def render_aggregate_markdown(study: dict) -> str:
    """A study's Markdown: the pooled detection table, per-run P/R/F1 and the matching rule."""
    minutes = study.get("forward_minutes", list(DEFAULT_FORWARD_MINUTES))
    names = study.get("algorithms", [])
    episodes = study.get("episodes", {})
    lines = [
        f"# Study: {study.get('runs', 0)} runs pooled",
        "",
        "- episodes: " + ", ".join(f"{episodes.get(k, 0)} {k}" for k in EPISODE_KINDS),
        f"- tolerance: {float(study.get('tolerance_s') or 0):g} s",
        "",
        "## Pooled detection",
        "",
        "Counts are summed over runs; precision, recall and F1 are recomputed from the pooled counts.",
        "",
        *_detection_table(study, minutes),
        "",
        "## Per run",
        "",
    ]
    header = ["run"] + [f"{n} P / R / F1" for n in names]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in study.get("per_run", []):
        label = row.get("seed")
        label = f"seed {label}" if label is not None else str(row.get("run") or row.get("run_dir") or "")
        cells = [label]
        for name in names:
            r = row.get(name)
            cells.append(f"{_num(r['precision'])} / {_num(r['recall'])} / {_num(r['f1'])}" if r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    trading_rows = {n: study[n]["trading"] for n in names if isinstance(study.get(n), dict) and study[n].get("trading")}
    if trading_rows:
        lines += ["", "## Trading (pooled)", ""]
        lines += _trading_table(trading_rows, pooled=True)
    lines += ["", "## Matching rule", "", study.get("matching_rule", ""), ""]
    return "\n".join(lines)
