"""``ifd bench`` / ``make bench``: generation, ingest and replay rates and peak memory, as JSON.

Each phase runs the real ``ifd`` command in a child process, so the numbers are what a
user gets, and each phase's peak memory (max RSS) is its own.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

from ifd.errors import IfdError

BENCH_CONFIG = Path("configs/backtests/demo.toml")  # FlowCounter: the no-op baseline
IFD_CONFIG = Path("configs/backtests/shadow_v1_v3.toml")  # IFD v1 + v3 side by side, shadow
BENCH_MINUTES = 120


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), in MB."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024.0


def _run_phase(args: list[str]) -> tuple[str, float, float]:
    """Run ``ifd ARGS`` as a child; return stdout, wall seconds and peak memory in MB.

    Peak memory is the larger of the child's own max RSS and the largest sum of RSS over the
    child and its worker processes, sampled every 20 ms.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "ifd.cli", *args], stdout=out_file, stderr=err_file, text=True)
        peak_tree = 0.0
        while True:
            done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if done:
                break
            peak_tree = max(peak_tree, _tree_rss_mb(proc.pid))
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        last = err.strip().splitlines()[-1] if err.strip() else "no output"
        raise IfdError(f"bench phase 'ifd {' '.join(args[:2])}' failed: {last}")
    return out, wall, max(usage.ru_maxrss / 1024.0, peak_tree)


def run_bench(workdir: Path, records: int = 1_000_000, out: Path | None = None) -> dict:
    """Generate a session of about ``records`` MBO records, ingest it, replay it; report rates."""
    shutil.rmtree(workdir, ignore_errors=True)
    scenario, catalog, run_dir = workdir / "scenario", workdir / "catalog", workdir / "run"
    rate = records / (BENCH_MINUTES * 60.0)

    gen_out, gen_wall, gen_mem = _run_phase(
        ["scenario", "generate", "--out", str(scenario), "--seed", "1",
         "--minutes", str(BENCH_MINUTES), "--rate", f"{rate:.3f}"],
    )
    generated = json.loads(gen_out)
    mbo_records = int(generated["records"])

    ing_out, ing_wall, ing_mem = _run_phase(
        ["catalog", "ingest", str(scenario / "definition.dbn.zst"), str(scenario / "mbo.dbn.zst"),
         "--catalog", str(catalog), "--json"],
    )
    ingested = json.loads(ing_out)

    run_out, run_wall, run_mem = _run_phase(
        ["backtest", "run", str(BENCH_CONFIG), "--catalog", str(catalog), "--out", str(run_dir)],
    )
    summary = json.loads(run_out)

    ifd_out, ifd_wall, ifd_mem = _run_phase(
        ["backtest", "run", str(IFD_CONFIG), "--catalog", str(catalog), "--out", str(workdir / "run_ifd")],
    )
    ifd = json.loads(ifd_out)
    latency = {
        entry["results"]["algorithm"]: entry["results"]["decision_latency_us"]
        for entry in ifd["strategies"].values()
        if "algorithm" in entry.get("results", {})
    }

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "scenario": {
            "mbo_records": mbo_records,
            "instruments": generated.get("instruments"),
            "minutes": BENCH_MINUTES,
        },
        "generation": {
            "records_per_second": round(mbo_records / generated["seconds"]) if generated.get("seconds") else None,
            "seconds": generated.get("seconds"),
            "process_wall_seconds": round(gen_wall, 2),
            "peak_memory_mb": round(gen_mem),
        },
        "ingest": {
            "records_per_second": ingested["records_per_second"],
            "seconds": ingested["seconds"],
            "rows_written": ingested["rows_written_total"],
            "process_wall_seconds": round(ing_wall, 2),
            "peak_memory_mb": round(ing_mem),
        },
        "replay_noop": {
            "strategy": "FlowCounter (counts only, no orders)",
            "records_per_second": summary["records_per_second"],
            "records_processed": summary["records_processed"],
            "seconds": summary["wall_seconds"],
            "process_wall_seconds": round(run_wall, 2),
            "peak_memory_mb": round(run_mem),
        },
        "replay_ifd_v1_v3": {
            "strategies": "IFD v1 + IFD v3, shadow (configs/backtests/shadow_v1_v3.toml)",
            "records_per_second": ifd["records_per_second"],
            "records_processed": ifd["records_processed"],
            "seconds": ifd["wall_seconds"],
            "added_to_noop_pct": round(100.0 * (ifd["wall_seconds"] / summary["wall_seconds"] - 1.0), 1),
            "decision_latency_us": latency,
            "process_wall_seconds": round(ifd_wall, 2),
            "peak_memory_mb": round(ifd_mem),
        },
        "peak_memory_mb": round(max(gen_mem, ing_mem, run_mem, ifd_mem)),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
    return result
