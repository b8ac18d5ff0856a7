"""The ``ifd`` command line: scenario generation, catalog ingest and listing, backtests, demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ifd import __version__
from ifd.env import load_dotenv
from ifd.errors import IfdError

DEFAULT_CATALOG = Path("data/catalog")


def _say(message: str) -> None:
    print(f"[ifd] {message}", file=sys.stderr, flush=True)


# -- scenario ---------------------------------------------------------------------------------


def _scenario_config(args: argparse.Namespace):
    from ifd.scenario.generate import ScenarioConfig

    overrides = {
        name: getattr(args, name)
        for name in ("seed", "strikes", "expiries", "minutes", "rate", "date", "days")
        if getattr(args, name, None) is not None
    }
    try:
        return ScenarioConfig(**overrides)
    except (TypeError, ValueError) as exc:
        raise IfdError(f"scenario settings: {exc}") from None


def cmd_scenario_generate(args: argparse.Namespace) -> int:
    from ifd.scenario.generate import generate_scenario

    summary = generate_scenario(Path(args.out), _scenario_config(args), progress=_say)
    print(json.dumps(summary, indent=2, default=str))
    return 0


# -- catalog ----------------------------------------------------------------------------------


def cmd_catalog_ingest(args: argparse.Namespace) -> int:
    from catalogs.ingest import ingest

    report = ingest([Path(p) for p in args.paths], Path(args.catalog), progress=_say)
    out = report.to_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for folder, rows in sorted(out["rows_written"].items()):
            print(f"{folder}: +{rows:,} rows")
        print(
            f"ingested {len(out['files'])} file(s), {out['records']:,} records in {out['seconds']} s "
            f"({out['records_per_second']:,} records/s); {out['rows_written_total']:,} rows written, "
            f"{out['duplicate_rows_skipped']:,} duplicate rows skipped",
        )
    return 0


def cmd_catalog_ls(args: argparse.Namespace) -> int:
    from catalogs.listing import describe_catalog
    from catalogs.listing import format_catalog

    summary = describe_catalog(Path(args.catalog))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_catalog(summary, per_instrument=args.instruments))
    return 0


# -- backtest ---------------------------------------------------------------------------------


def cmd_backtest_run(args: argparse.Namespace) -> int:
    from backtests.runner import run_backtest

    result = run_backtest(
        Path(args.config),
        catalog=Path(args.catalog) if args.catalog else None,
        out=Path(args.out) if args.out else None,
        progress=_say,
        start=args.start,
        end=args.end,
    )
    print(json.dumps(result.summary, indent=2))
    _say(f"run folder: {result.run_dir}")
    return 0


def cmd_baselines_build(args: argparse.Namespace) -> int:
    from ifd.detection.baselines import build_baselines

    result = build_baselines(
        Path(args.catalog), date=args.date, lookback=args.lookback, window_ns=int(args.window * 1e9), progress=_say,
    )
    out = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    print(json.dumps(out, indent=2, default=str) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ifd.evaluation.report import evaluate_run
    from ifd.evaluation.report import write_evaluation

    run_dir = Path(args.run_dir)
    result = evaluate_run(
        run_dir, Path(args.labels), tolerance_s=args.tolerance, catalog=Path(args.catalog) if args.catalog else None,
    )
    written = write_evaluation(run_dir, result)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print((run_dir / "evaluation.md").read_text())
        _say(f"wrote {written if written else run_dir / 'evaluation.json'}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from backtests.study import parse_seeds
    from backtests.study import run_study
    from ifd.evaluation.report import render_aggregate_markdown

    scenario = _scenario_config(args)
    study = run_study(
        parse_seeds(args.seeds), Path(args.workdir), scenario=scenario, config=Path(args.config),
        name=args.name, progress=_say,
    )
    print(json.dumps(study, indent=2, default=str) if args.json else render_aggregate_markdown(study))
    _say(f"wrote {Path(args.workdir) / (args.name + '.md')} and .json")
    return 0


def cmd_live_paper(args: argparse.Namespace) -> int:
    from live.paper import paper_config
    from live.paper import run_paper
    from live.replay_client import replay_finished

    config = paper_config(args.config, [Path(p) for p in args.replay or []], args.speed)
    result = run_paper(
        config,
        args.duration,
        stop_when=replay_finished if args.replay else None,
        summary_path=Path(args.summary) if args.summary else None,
        session_dir=Path(args.session) if args.session else None,
        pid_dir=Path(args.pid_dir),
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_live_limited(args: argparse.Namespace) -> int:
    from live.limited import build_limited_node, run_limited
    from live.paper import replay_config
    from live.replay_client import replay_finished

    replay = None
    if args.replay:
        if not args.sandbox:
            raise IfdError("--replay needs --sandbox: recorded data is never traded at a broker")
        paths = [Path(p) for p in args.replay]
        if len(paths) == 1 and paths[0].is_dir():
            replay = replay_config(catalog=paths[0], speed=args.speed, where="--replay")
        else:
            replay = replay_config(dbn_files=paths, speed=args.speed, where="--replay")
    node = build_limited_node(args.config, sandbox=args.sandbox, replay=replay)
    result = run_limited(
        node,
        args.duration,
        stop_when=replay_finished if replay is not None else None,
        summary_path=Path(args.summary) if args.summary else None,
        session_dir=Path(args.session) if args.session else None,
        pid_dir=Path(args.pid_dir),
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_live_stop(args: argparse.Namespace) -> int:
    from live.control import stop_node

    print(json.dumps(stop_node(Path(args.pid_dir), args.trader_id, args.timeout)))
    return 0


def cmd_live_check_limits(args: argparse.Namespace) -> int:
    from live.limits import load_limits

    limits = load_limits(Path(args.limits))
    print(f"limits ok: {limits}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from adapters.databento.budget import load_budget
    from adapters.databento.downloads import DownloadRequest, Downloader, historical_client
    from ifd.alerts import build_dispatcher, load_alerts_config

    request = DownloadRequest.parse(args.dataset, args.schema, args.symbols, args.stype, args.start, args.end)
    budget = load_budget(args.budget)
    alerts = build_dispatcher(load_alerts_config(budget.alerts), strict=False)
    downloader = Downloader(
        budget, raw_root=Path(args.raw), catalog=None if args.no_ingest else Path(args.catalog),
        client_factory=lambda: historical_client(gateway=args.gateway), alerts=alerts, progress=_say,
    )
    try:
        report = downloader.run(request)
    finally:
        alerts.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def cmd_data_budget(args: argparse.Namespace) -> int:
    from adapters.databento.budget import budget_report, format_budget_report, load_budget

    report = budget_report(load_budget(args.budget))
    print(json.dumps(report, indent=2) if args.json else format_budget_report(report))
    return 0


def cmd_monitor_poll(args: argparse.Namespace) -> int:
    from adapters.databento.downloads import historical_client
    from ifd.monitor import Monitor, load_monitor_config
    from ifd.monitor.config import parse_interval

    config = load_monitor_config(args.config)
    every_s = parse_interval(args.every, "--every") if args.every else config.every_s
    monitor = Monitor(config, client_factory=lambda: historical_client(gateway=args.gateway), progress=_say)
    if args.once:
        print(monitor.cycle().format())
        return 0
    return monitor.run(every_s)


def cmd_demo(args: argparse.Namespace) -> int:
    from backtests.demo import run_demo

    run_demo(Path(args.workdir), seed=args.seed, progress=_say)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ifd.bench import run_bench

    result = run_bench(Path(args.workdir), records=args.records, out=Path(args.out) if args.out else None)
    print(json.dumps(result, indent=2))
    return 0


# -- parser -----------------------------------------------------------------------------------


def _quiet_dependency_warnings() -> None:
    """NautilusTrader 1.231 and databento use pandas APIs pandas 3.1 flags for removal in 4.0."""
    import warnings

    import databento  # noqa: F401  (its import turns every DeprecationWarning on; ours must come after)
    from pandas.errors import Pandas4Warning

    warnings.filterwarnings("ignore", category=Pandas4Warning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ifd",
        description="Institutional flow detection in CME NQ options from Databento MBO, on NautilusTrader.",
    )
    parser.add_argument("--version", action="version", version=f"ifd {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    scenario = groups.add_parser("scenario", help="synthetic, labeled NQ options sessions").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    gen = scenario.add_parser(
        "generate",
        help="write definition.dbn.zst, mbo.dbn.zst and labels.parquet for a synthetic session",
        description="Simulate an NQ options session (future + option chain, market makers, retail flow, "
        "planted institutional / mm_straddle / volume_noise episodes) and write it as real DBN files.",
    )
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--seed", type=int, help="random seed; the same seed gives byte-identical files")
    gen.add_argument("--strikes", type=int, help="strikes around the money per expiry (calls and puts each)")
    gen.add_argument("--expiries", type=int, help="number of option expiries")
    gen.add_argument("--minutes", type=int, help="session length in minutes")
    gen.add_argument("--rate", type=float, help="mean background MBO records per second over the chain")
    gen.add_argument("--date", help="session date, YYYY-MM-DD (UTC)")
    gen.add_argument(
        "--days", type=int,
        help="sessions in all: the episode day plus DAYS-1 history days (under OUT/history/) for baselines",
    )
    gen.set_defaults(func=cmd_scenario_generate)

    baselines = groups.add_parser("baselines", help="per-instrument historical baselines for IFD v3").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    bl = baselines.add_parser(
        "build",
        help="compute (incrementally) the N-day baseline for a date from the catalog's trades",
        description="Per instrument: mean, std and percentiles of windowed volume, pressure and net premium "
        "over the LOOKBACK trading days before DATE, from the catalog's TradeTick data (vectorized). "
        "Daily statistics are cached under CATALOG/baselines/daily and only new days are computed.",
    )
    bl.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="catalog folder (default: %(default)s)")
    bl.add_argument("--date", help="the day the baseline is for, YYYY-MM-DD (default: the catalog's last day)")
    bl.add_argument("--lookback", type=int, default=20, help="trading days of history (default: %(default)s)")
    bl.add_argument("--window", type=float, default=300.0, help="window length in seconds (default: %(default)s)")
    bl.add_argument("--json", action="store_true", help="print the result as JSON")
    bl.set_defaults(func=cmd_baselines_build)

    evaluate = groups.add_parser(
        "evaluate",
        help="score a run's signals against labeled episodes (precision, recall, F1, causes, delays)",
        description="Score each algorithm's signals in RUN_DIR/signals.parquet against the scenario's labels, "
        "next to a naive net-premium reference detector; write evaluation.md and evaluation.json into the run.",
    )
    evaluate.add_argument("run_dir", help="a backtest run folder")
    evaluate.add_argument("--labels", required=True, help="the scenario's labels.parquet")
    evaluate.add_argument("--tolerance", type=float, default=60.0, help="seconds after an episode's end a hit may come")
    evaluate.add_argument("--catalog", help="catalog of the run (default: the one in summary.json)")
    evaluate.add_argument("--json", action="store_true", help="print the evaluation JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    catalog = groups.add_parser("catalog", help="NautilusTrader Parquet data catalog").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    ing = catalog.add_parser(
        "ingest",
        help="load DBN files into a catalog (definitions first; re-ingesting adds no duplicates)",
        description="Load DBN files (definition, mbo, trades, mbp-1, tbbo, statistics) with NautilusTrader's "
        "DatabentoDataLoader into a ParquetDataCatalog. Files are validated first; new data is staged "
        "and moved into place, so a failure leaves the catalog unchanged.",
    )
    ing.add_argument("paths", nargs="+", help="DBN files (.dbn or .dbn.zst)")
    ing.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="catalog folder (default: %(default)s)")
    ing.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    ing.set_defaults(func=cmd_catalog_ingest)

    ls = catalog.add_parser("ls", help="list instruments, data types, time ranges and row counts")
    ls.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="catalog folder (default: %(default)s)")
    ls.add_argument("--json", action="store_true", help="JSON with a rows field per data type and instrument")
    ls.add_argument("--instruments", action="store_true", help="also list rows per instrument")
    ls.set_defaults(func=cmd_catalog_ls)

    backtest = groups.add_parser("backtest", help="NautilusTrader BacktestNode runs").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    run = backtest.add_parser(
        "run",
        help="run a backtest described by a TOML file under configs/backtests/",
        description="Build a BacktestNode from CONFIG.toml (venue, data from the catalog, strategies, risk "
        "engine) and write a run folder with summary.json and order/fill/position/account reports.",
    )
    run.add_argument("config", help="backtest TOML, e.g. configs/backtests/demo.toml")
    run.add_argument("--catalog", help="catalog folder (overrides the config's catalog)")
    run.add_argument("--out", help="run folder (default: backtests/runs/<UTC timestamp>-<config name>/)")
    run.add_argument("--start", help="replay from this time (ISO 8601, UTC), overriding [run] start")
    run.add_argument("--end", help="replay up to this time (ISO 8601, UTC, inclusive), overriding [run] end")
    run.set_defaults(func=cmd_backtest_run)

    study = groups.add_parser(
        "study",
        help="detection quality over several seeds: generate, ingest, backtest v1+v3, evaluate, pool",
        description="For each seed: generate a session (default generator settings unless overridden), "
        "ingest it, build baselines when --days gives history, replay it with IFD v1 and v3 in shadow "
        "(configs/backtests/shadow_v1_v3.toml) and score it; then pool the seeds.",
    )
    study.add_argument("--seeds", required=True, help="seeds, e.g. 1-5 or 6-10 or 1,3,7")
    study.add_argument("--workdir", default="data/study", help="where seeds and results go (default: %(default)s)")
    study.add_argument("--name", default="study", help="result file stem (default: %(default)s)")
    study.add_argument("--config", default="configs/backtests/shadow_v1_v3.toml", help="backtest TOML")
    study.add_argument("--days", type=int, help="sessions per seed incl. history days for baselines (default 1)")
    for name, kind in (("strikes", int), ("expiries", int), ("minutes", int), ("rate", float)):
        study.add_argument(f"--{name}", type=kind, help=f"scenario {name} (default: the generator's)")
    study.add_argument("--json", action="store_true", help="print the pooled JSON instead of the table")
    study.set_defaults(func=cmd_study, seed=None, date=None)

    live = groups.add_parser("live", help="paper and limited-live TradingNodes on live Databento data").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    paper = live.add_parser(
        "paper",
        help="run the IFD strategies in a TradingNode: Databento live data, Sandbox fills",
        description="Databento live data (GLBX.MDP3; key from DATABENTO_API_KEY, never logged) and the "
        "Sandbox execution client filling against the live L3 book, with the strategies and profiles of "
        "the backtests. Stops after --duration seconds or on Ctrl-C.",
    )
    paper.add_argument("config", nargs="?", default="configs/live/paper.toml", help="paper node TOML")
    paper.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    paper.add_argument("--summary", help="write the strategies' summaries to this JSON file")
    paper.add_argument("--session", help="write a session folder (run-folder format, for ifd evaluate) here")
    paper.add_argument(
        "--replay", nargs="+", metavar="PATH",
        help="rehearse offline: replay a catalog folder or DBN files instead of the Databento feed (no key needed)",
    )
    paper.add_argument("--speed", type=float, default=1.0, help="replay speed: 1 real time, N times, 0 as fast as possible")
    paper.add_argument("--pid-dir", default="data/live", help="where the running node's pid file goes, for ifd live stop (default: %(default)s)")
    paper.set_defaults(func=cmd_live_paper)
    limited = live.add_parser(
        "limited",
        help="limited live: Interactive Brokers execution under hard limits (1 contract, $50/day)",
        description="Databento live data, Interactive Brokers execution (TWS/Gateway host, port, client id and "
        "account from the environment), the risk guard and NautilusTrader's RiskEngine limits. Refuses to "
        "start, before connecting anywhere, when a limit is missing or looser than the hard caps, or the "
        "account is not set.",
    )
    limited.add_argument("config", nargs="?", default="configs/live/limited.toml", help="limited node TOML")
    limited.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    limited.add_argument("--summary", help="write the session summary to this JSON file")
    limited.add_argument("--session", help="write a session folder (run-folder format, for ifd evaluate) here")
    limited.add_argument(
        "--sandbox", action="store_true",
        help="rehearse: the Sandbox execution client (paper fills) instead of Interactive Brokers, every limit in force",
    )
    limited.add_argument(
        "--replay", nargs="+", metavar="PATH",
        help="with --sandbox: replay a catalog folder or DBN files instead of the Databento feed (no key needed)",
    )
    limited.add_argument("--speed", type=float, default=1.0, help="replay speed: 1 real time, N times, 0 as fast as possible")
    limited.add_argument("--pid-dir", default="data/live", help="where the running node's pid file goes, for ifd live stop (default: %(default)s)")
    limited.set_defaults(func=cmd_live_limited)
    stop = live.add_parser(
        "stop",
        help="emergency stop of a running node: cancel every order, flatten every position, exit",
        description="Sends SIGTERM to the node found in the pid dir (the same as Ctrl-C or SIGTERM to the node) "
        "and waits until it has cancelled, flattened and exited.",
    )
    stop.add_argument("--trader-id", help="the node's trader id, e.g. IFD-LIMITED (default: the only running node)")
    stop.add_argument("--pid-dir", default="data/live", help="where running nodes keep their pid files (default: %(default)s)")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the node to exit (default: %(default)s)")
    stop.set_defaults(func=cmd_live_stop)
    check = live.add_parser(
        "check-limits",
        help="validate limited-live limits against the hard caps (refuses what the limited node would refuse)",
    )
    check.add_argument("limits", nargs="?", default="configs/live/limits.toml", help="limits TOML")
    check.set_defaults(func=cmd_live_check_limits)

    data = groups.add_parser("data", help="Databento historical downloads under a budget").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    dl = data.add_parser(
        "download",
        help="download UTC days of Databento data and their definitions, cost-checked, into the raw folder and catalog",
        description="One request per UTC day and schema with the official databento.Historical client (key from "
        "DATABENTO_API_KEY, environment or .env, never printed). Each request is priced with metadata.get_cost and "
        "get_billable_size first and refused (exit code 3, nothing downloaded) when it would pass what is left of "
        "the daily or monthly budget (configs/budget.toml); days already downloaded are skipped without an API "
        "call. Files are verified and moved into RAW/<dataset>/<schema>/<day>/ only when complete, then ingested.",
    )
    dl.add_argument("--dataset", default="GLBX.MDP3", help="Databento dataset (default: %(default)s)")
    dl.add_argument("--schema", default="mbo", help="data schema; definitions come with it (default: %(default)s)")
    dl.add_argument("--symbols", required=True, help="comma separated, e.g. NQ.OPT,NQ.FUT")
    dl.add_argument(
        "--stype", default="parent",
        help="symbology of --symbols: parent, raw_symbol, instrument_id (default: %(default)s)",
    )
    dl.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    dl.add_argument("--end", help="UTC day after the last one (exclusive, as Databento's end; default: start + 1 day)")
    dl.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="catalog to ingest into (default: %(default)s)")
    dl.add_argument("--no-ingest", action="store_true", help="download only, do not ingest into the catalog")
    dl.add_argument("--raw", default="data/raw", help="raw DBN folder (default: %(default)s)")
    dl.add_argument("--budget", help="budget TOML (default: $IFD_BUDGET_CONFIG or configs/budget.toml)")
    dl.add_argument("--gateway", help="historical API base URL (default: $DATABENTO_GATEWAY or Databento's)")
    dl.add_argument("--json", action="store_true", help="print the report as JSON")
    dl.set_defaults(func=cmd_data_download)
    bud = data.add_parser(
        "budget",
        help="Databento spend per UTC day and month against the budget, from the ledger",
        description="Spend (actual cost of what was received; the estimate of requests in progress) per UTC day and "
        "month of request time, against configs/budget.toml's limits, with the requests done, failed and refused.",
    )
    bud.add_argument("--budget", help="budget TOML (default: $IFD_BUDGET_CONFIG or configs/budget.toml)")
    bud.add_argument("--json", action="store_true", help="print the report as JSON")
    bud.set_defaults(func=cmd_data_budget)

    monitor = groups.add_parser("monitor", help="poll Databento for new data, detect IFD flow, alert").add_subparsers(
        dest="action", metavar="ACTION", required=True,
    )
    poll = monitor.add_parser(
        "poll",
        help="download each newly completed UTC day (cost-checked), run IFD v1/v3 over it, alert new signals",
        description="Each cycle asks Databento how far the dataset goes, downloads the completed UTC days not yet "
        "processed through the same cost-checked path as `ifd data download`, runs the configured backtest "
        "(shadow IFD v1 + v3) over each and alerts signals not alerted before (state in SQLite). Exit code 3 on "
        "a budget refusal.",
    )
    poll.add_argument("--config", default="configs/monitor.toml", help="monitor TOML (default: %(default)s)")
    poll.add_argument("--every", help="interval between cycles, e.g. 15m, 30s, 1h (default: the config's)")
    poll.add_argument("--once", action="store_true", help="run one cycle and exit (for cron)")
    poll.add_argument("--gateway", help="historical API base URL (default: $DATABENTO_GATEWAY or Databento's)")
    poll.set_defaults(func=cmd_monitor_poll)

    demo = groups.add_parser(
        "demo",
        help="generate the demo scenario, ingest it, run the demo backtest, print the summary",
    )
    demo.add_argument("--workdir", default="data/demo", help="where the scenario and catalog go (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="scenario seed (default: %(default)s)")
    demo.set_defaults(func=cmd_demo)

    bench = groups.add_parser("bench", help="generation, ingest and replay benchmarks as JSON")
    bench.add_argument("--workdir", default="data/bench", help="scratch folder (default: %(default)s)")
    bench.add_argument("--records", type=int, default=1_000_000, help="target MBO records (default: %(default)s)")
    bench.add_argument("--out", help="also write the JSON here")
    bench.set_defaults(func=cmd_bench)
    from ifd.alerts.cli import register as register_alerts
    from ifd.report.cli import register as register_report

    register_alerts(groups)
    register_report(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_dependency_warnings()
    load_dotenv()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IfdError as exc:
        print(f"ifd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ifd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
