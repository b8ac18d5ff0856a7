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
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

from ifd.errors import IfdError

BENCH_CONFIG = Path("configs/backtests/noop.toml")  # NoOp: subscribes to everything, no handlers
INGEST_REPEATS = 3  # ingest is short and this machine is noisy: report the median of three
REPLAY_REPEATS = 2
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


@dataclass(frozen=True)
class Phase:
    """One child run of ``ifd``: its stdout, wall and CPU seconds (user + system) and peak memory."""

    out: str
    wall: float
    cpu: float
    mem: float


def _run_phase(args: list[str]) -> Phase:
    """Run ``ifd ARGS`` as a child; return stdout, wall seconds, CPU seconds and peak memory in MB.

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
    return Phase(out, wall, usage.ru_utime + usage.ru_stime, max(usage.ru_maxrss / 1024.0, peak_tree))


def run_bench(workdir: Path, records: int = 1_000_000, out: Path | None = None) -> dict:
    """Generate a session of about ``records`` MBO records, ingest it, replay it; report rates."""
    shutil.rmtree(workdir, ignore_errors=True)
    scenario, catalog = workdir / "scenario", workdir / "catalog"
    rate = records / (BENCH_MINUTES * 60.0)

    gen = _run_phase(
        ["scenario", "generate", "--out", str(scenario), "--seed", "1",
         "--minutes", str(BENCH_MINUTES), "--rate", f"{rate:.3f}"],
    )
    generated = json.loads(gen.out)
    mbo_records = int(generated["records"])

    ingests = []
    for attempt in range(INGEST_REPEATS):
        target = catalog if attempt == INGEST_REPEATS - 1 else workdir / f"catalog_{attempt}"
        phase = _run_phase(
            ["catalog", "ingest", str(scenario / "definition.dbn.zst"), str(scenario / "mbo.dbn.zst"),
             "--catalog", str(target), "--json"],
        )
        ingests.append((json.loads(phase.out), phase.wall, phase.mem))
        if target != catalog:
            shutil.rmtree(target, ignore_errors=True)
    ingests.sort(key=lambda item: item[0]["records_per_second"])
    ingested, ing_wall, _ = ingests[len(ingests) // 2]
    ing_mem = max(mem for _, _, mem in ingests)

    # Replays are long and the machine is noisy: alternate the two configs, keep each one's
    # run with the least CPU time, and compare CPU seconds (wall seconds are reported too).
    replays: dict[Path, list[Phase]] = {BENCH_CONFIG: [], IFD_CONFIG: []}
    for attempt in range(REPLAY_REPEATS):
        for config in (BENCH_CONFIG, IFD_CONFIG):
            out_dir = workdir / f"run_{config.stem}_{attempt}"
            replays[config].append(
                _run_phase(["backtest", "run", str(config), "--catalog", str(catalog), "--out", str(out_dir)]),
            )
    noop_run = min(replays[BENCH_CONFIG], key=lambda phase: phase.cpu)
    ifd_run = min(replays[IFD_CONFIG], key=lambda phase: phase.cpu)
    summary, ifd = json.loads(noop_run.out), json.loads(ifd_run.out)
    latency = {
        entry["results"]["algorithm"]: entry["results"]["decision_latency_us"]
        for entry in ifd["strategies"].values()
        if "algorithm" in entry.get("results", {})
    }
    run_mem = max(phase.mem for phase in replays[BENCH_CONFIG])
    ifd_mem = max(phase.mem for phase in replays[IFD_CONFIG])
    gen_wall, gen_mem = gen.wall, gen.mem

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
            "records_per_second_runs": [item[0]["records_per_second"] for item in ingests],
            "seconds": ingested["seconds"],
            "rows_written": ingested["rows_written_total"],
            "process_wall_seconds": round(ing_wall, 2),
            "peak_memory_mb": round(ing_mem),
        },
        "replay_noop": {
            "strategy": "NoOp (subscribes to every delta and trade, no handlers)",
            "records_per_second": summary["records_per_second"],
            "records_processed": summary["records_processed"],
            "seconds": summary["wall_seconds"],
            "process_cpu_seconds": round(noop_run.cpu, 2),
            "process_wall_seconds": round(noop_run.wall, 2),
            "peak_memory_mb": round(run_mem),
        },
        "replay_ifd_v1_v3": {
            "strategies": "IFD v1 + IFD v3, shadow (configs/backtests/shadow_v1_v3.toml)",
            "records_per_second": ifd["records_per_second"],
            "records_processed": ifd["records_processed"],
            "seconds": ifd["wall_seconds"],
            "added_to_noop_pct_cpu": round(100.0 * (ifd_run.cpu / noop_run.cpu - 1.0), 1),
            "added_to_noop_pct_wall": round(100.0 * (ifd["wall_seconds"] / summary["wall_seconds"] - 1.0), 1),
            "decision_latency_us": latency,
            "process_cpu_seconds": round(ifd_run.cpu, 2),
            "process_wall_seconds": round(ifd_run.wall, 2),
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
