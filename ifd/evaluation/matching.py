"""The matching rule between signals and labeled episodes, and the detection scores built on it.

A signal is a hit for an ``institutional`` episode when it names one of the episode's
instruments, with the episode's side, and its ``ts_event`` lies between the episode's start
and its end plus a tolerance. Precision counts signals (hits / all signals); recall counts
episodes (episodes with at least one hit / all institutional episodes). A signal that is not
a hit is a false positive, attributed to the labeled episode it falls on (same instrument,
inside that episode's window plus the tolerance; ``institutional`` there means the wrong
side) or to ``unlabeled``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_TOLERANCE_NS = 60 * 1_000_000_000
FALSE_POSITIVE_CAUSES = ("mm_straddle", "volume_noise", "institutional_wrong_side", "unlabeled")


def _episode_rows(labels: pd.DataFrame) -> pd.DataFrame:
    """One row per (episode, instrument)."""
    rows = labels[["episode_id", "kind", "instrument_ids", "side", "start_ns", "end_ns"]].explode("instrument_ids")
    return rows.rename(columns={"instrument_ids": "instrument_id", "side": "episode_side"})


def match_signals(signals: pd.DataFrame, labels: pd.DataFrame, tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> pd.DataFrame:
    """``signals`` with ``episode_id`` (the institutional episode it hits, or -1) and ``cause``.

    ``signals`` needs ``ts_event``, ``instrument_id`` and ``side`` ("BUY"/"SELL"); ``labels``
    is a scenario's ``labels.parquet``.
    """
    out = signals.reset_index(drop=True).copy()
    keys = out[["ts_event", "instrument_id", "side"]].reset_index(names="signal")
    out["episode_id"] = -1
    out["cause"] = "hit"
    if out.empty:
        return out
    candidates = keys.merge(_episode_rows(labels), on="instrument_id")
    inside = (candidates["ts_event"] >= candidates["start_ns"]) & (
        candidates["ts_event"] <= candidates["end_ns"] + tolerance_ns
    )
    candidates = candidates[inside]
    hits = candidates[(candidates["kind"] == "institutional") & (candidates["side"] == candidates["episode_side"])]
    first_hit = hits.sort_values("start_ns").drop_duplicates("signal")
    out.loc[first_hit["signal"].to_numpy(), "episode_id"] = first_hit["episode_id"].to_numpy()

    misses = candidates[~candidates["signal"].isin(first_hit["signal"])].copy()
    misses["cause"] = np.where(misses["kind"] == "institutional", "institutional_wrong_side", misses["kind"])
    misses = misses.sort_values("start_ns").drop_duplicates("signal")
    unmatched = out["episode_id"] < 0
    out.loc[unmatched, "cause"] = "unlabeled"
    out.loc[misses["signal"].to_numpy(), "cause"] = misses["cause"].to_numpy()
    return out


def score(signals: pd.DataFrame, labels: pd.DataFrame, tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> dict:
    """Precision, recall, F1, false positives by cause and detection delays for one algorithm."""
    matched = match_signals(signals, labels, tolerance_ns)
    institutional = labels[labels["kind"] == "institutional"]
    hits = matched[matched["episode_id"] >= 0]
    detected = set(hits["episode_id"].tolist())
    n_signals = len(matched)
    precision = len(hits) / n_signals if n_signals else 0.0
    recall = len(detected) / len(institutional) if len(institutional) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    starts = institutional.set_index("episode_id")["start_ns"]
    first = hits.groupby("episode_id")["ts_event"].min()
    delays = (first - starts.reindex(first.index)) / 1e9
    causes = matched.loc[matched["episode_id"] < 0, "cause"].value_counts()
    return {
        "signals": n_signals,
        "true_positive_signals": len(hits),
        "episodes": len(institutional),
        "episodes_detected": len(detected),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "false_positives": int(n_signals - len(hits)),
        "false_positives_by_cause": {cause: int(causes.get(cause, 0)) for cause in FALSE_POSITIVE_CAUSES},
        "median_detection_delay_s": round(float(delays.median()), 3) if len(delays) else None,
        "tolerance_s": tolerance_ns / 1e9,
    }
