"""Secrets from a .env file, and the live commands' refusals (no network involved)."""

from __future__ import annotations

from pathlib import Path

from ifd.cli import main
from ifd.env import load_dotenv


def test_dotenv_fills_only_what_the_environment_lacks(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nDATABENTO_API_KEY="db-secret"\nexport IB_ACCOUNT_ID=DU42\nEXISTING=from-file\n\nnot a line\n')
    environ = {"EXISTING": "from-env"}
    assert load_dotenv(env_file, environ) == ["DATABENTO_API_KEY", "IB_ACCOUNT_ID"]
    assert environ == {"EXISTING": "from-env", "DATABENTO_API_KEY": "db-secret", "IB_ACCOUNT_ID": "DU42"}
    assert load_dotenv(tmp_path / "missing.env", environ) == []


def test_live_commands_refuse_without_secrets_and_never_print_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    monkeypatch.delenv("IB_ACCOUNT_ID", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert main(["live", "paper", str(root / "configs/live/paper.toml"), "--duration", "1"]) == 2
    assert "DATABENTO_API_KEY is not set" in capsys.readouterr().err
    assert main(["live", "check-limits", str(root / "configs/live/limits.toml")]) == 2
    assert "IB_ACCOUNT_ID" in capsys.readouterr().err
    monkeypatch.setenv("IB_ACCOUNT_ID", "U7654321")
    assert main(["live", "check-limits", str(root / "configs/live/limits.toml")]) == 0
    out = capsys.readouterr().out
    assert "limits ok" in out and "U7654321" not in out


def test_live_paper_replay_from_the_command_line(tmp_path, capsys):
    """Offline rehearsal: `ifd live paper --replay CATALOG --speed 0` needs no key and writes a session folder."""
    import json
    import subprocess
    import sys

    from catalogs.ingest import ingest
    from ifd.scenario.generate import ScenarioConfig
    from ifd.scenario.generate import generate_scenario

    generate_scenario(tmp_path / "scenario", ScenarioConfig(seed=5, strikes=2, expiries=1, minutes=4, rate=80.0))
    ingest([tmp_path / "scenario" / "definition.dbn.zst", tmp_path / "scenario" / "mbo.dbn.zst"], tmp_path / "catalog")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in __import__("os").environ.items() if k != "DATABENTO_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "ifd.cli", "live", "paper", str(root / "configs/live/paper.toml"),
         "--replay", str(tmp_path / "catalog"), "--speed", "0", "--duration", "120",
         "--session", str(tmp_path / "session")],
        cwd=root, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "session" / "summary.json").read_text())
    trades = {entry["results"]["trades_seen"] for entry in summary["strategies"].values()}
    catalog_trades = sum(
        __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(f).metadata.num_rows
        for f in (tmp_path / "catalog" / "data" / "trade_tick").rglob("*.parquet")
    )
    assert trades == {catalog_trades}
    assert (tmp_path / "session" / "signals.parquet").exists()
