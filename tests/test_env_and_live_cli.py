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
