"""Rehearse cost-checked Databento downloads offline and print the transcript (the README's "Data costs").

    .venv/bin/python scripts/rehearse_data_costs.py [--workdir data/rehearsal/costs]

Generates a two-day NQ session (2026-11-13 and 2026-11-16), serves it with our historical API
on 127.0.0.1 (``adapters.databento.historical_gateway``, HTTPS, at illustrative unit prices) and
runs the real ``ifd`` command line against it, in a fresh ``WORKDIR`` with its own budget file
(the shipped limits: $8 a day, $200 a month), ledger, raw folder, catalog and alert history:

1. ``ifd data download`` of both days and the weekend between (definitions + MBO);
2. the same command again: every day skipped, no API call;
3. the options alone at a much higher price: refused by the budget (exit code 3);
4. ``ifd data budget``.

Nothing here reaches the internet; no Databento key is needed (the gateway's own key is used).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from adapters.databento.historical_gateway import HistoricalGateway, HistoricalStore  # noqa: E402
from ifd.scenario import ScenarioConfig, generate_scenario  # noqa: E402

PRICES = {"mbo": 120.0, "definition": 100.0}  # USD per GB: illustrative, not Databento's price list
EXPENSIVE_MBO = 2_500.0


def _run(args: list[str], env: dict[str, str]) -> int:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ ifd {shown}", flush=True)
    done = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "ifd"), *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=False)
    for line in (done.stderr + done.stdout).rstrip().splitlines():
        print(line)
    print(f"(exit code {done.returncode})\n", flush=True)
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="data/rehearsal/costs", help="scratch folder, emptied first")
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    (work / "session").mkdir(parents=True)
    generate_scenario(work / "session", ScenarioConfig(seed=7, strikes=4, expiries=1, minutes=20, days=2))
    (work / "alerts.toml").write_text(
        f'[console]\nmin_level = "warning"\n[log_file]\nenabled = false\n[history]\npath = "{work}/alerts.sqlite"\n',
    )
    budget = work / "budget.toml"
    budget.write_text(
        f'[budget]\ndaily_usd = 8\nmonthly_usd = 200\nalert_at = 0.8\nledger = "{work}/ledger.sqlite"\n'
        f'alerts = "{work}/alerts.toml"\n',
    )
    with HistoricalGateway(HistoricalStore.from_paths([work / "session"]), unit_prices=PRICES) as gw:
        env = {**os.environ, **gw.client_env(), "DATABENTO_API_KEY": gw.api_key, "DATABENTO_GATEWAY": gw.url,
               "IFD_BUDGET_CONFIG": str(budget)}
        common = ["--raw", f"{work}/raw", "--catalog", f"{work}/catalog"]
        download = ["data", "download", "--dataset", "GLBX.MDP3", "--schema", "mbo", "--symbols", "NQ.OPT,NQ.FUT",
                    "--stype", "parent", "--start", "2026-11-13", "--end", "2026-11-17", *common]
        print(f"# gateway {gw.url}; prices USD/GB {PRICES}; budget {budget}\n")
        _run(download, env)
        before = gw.count()
        _run(download, env)
        print(f"# API requests made by the second run: {gw.count() - before}\n")
        gw.unit_prices = {**PRICES, "mbo": EXPENSIVE_MBO}
        print(f"# mbo now at {EXPENSIVE_MBO:,.0f} USD/GB\n")
        _run(["data", "download", "--symbols", "NQ.OPT", "--start", "2026-11-13", "--end", "2026-11-17", *common], env)
        _run(["data", "budget"], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
