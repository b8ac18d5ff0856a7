"""live.limits: the limited-live limits file; every refusal is one line naming the file and the setting.

The data budget limits are read from the budget file (``configs/budget.toml``, or the one
``IFD_BUDGET_CONFIG`` names), the single place shared with the downloads: its refusals name that file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ifd.errors import IfdError
from live.limits import DATA_BUDGET_LIMITS
from live.limits import HARD_CAPS
from live.limits import load_limits

PROJECT = Path(__file__).resolve().parents[1]
SHIPPED = PROJECT / "configs" / "live" / "limits.toml"
ACCOUNT = "DU7654321"
ENV = {"IB_ACCOUNT_ID": ACCOUNT}
VALID = {
    "max_position_contracts": "1",
    "max_daily_loss_usd": "50",
    "max_total_risk_usd": "200",
    "max_consecutive_losses": "3",
    "max_drawdown_usd": "40",
    "account_env": '"IB_ACCOUNT_ID"',
}
# The hard-cap names of the data budget and their settings in the budget file's [budget] table.
BUDGET_KEYS = {"data_budget_daily_usd": "daily_usd", "data_budget_monthly_usd": "monthly_usd"}
VALID_BUDGET = {"daily_usd": "8", "monthly_usd": "200"}


def write(tmp_path: Path, drop: str | None = None, **changes: str) -> Path:
    values = {**VALID, **changes}
    if drop:
        values.pop(drop)
    path = tmp_path / "limits.toml"
    path.write_text("[limits]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def write_budget(tmp_path: Path, drop: str | None = None, **changes: str) -> Path:
    values = {**VALID_BUDGET, **{BUDGET_KEYS.get(k, k): v for k, v in changes.items()}}
    if drop:
        values.pop(BUDGET_KEYS.get(drop, drop))
    path = tmp_path / "budget.toml"
    path.write_text("[budget]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def refused(path: Path, env=ENV, *, names: Path | None = None) -> str:
    """The one-line refusal; it starts with ``names`` (default: the limits file)."""
    with pytest.raises(IfdError) as info:
        load_limits(path, env=env)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{names or path}: ")
    return message


def refused_budget(tmp_path: Path, drop: str | None = None, **changes: str) -> str:
    """A valid limits file with a budget file (named by IFD_BUDGET_CONFIG) that is refused."""
    budget = write_budget(tmp_path, drop, **changes)
    return refused(write(tmp_path), {**ENV, "IFD_BUDGET_CONFIG": str(budget)}, names=budget)


def test_shipped_file_loads():
    limits = load_limits(SHIPPED, env=ENV)
    assert limits.max_position_contracts == 1 and limits.max_daily_loss_usd == 50.0
    assert limits.max_total_risk_usd == 200.0 and limits.max_consecutive_losses == 3
    assert limits.data_budget_daily_usd == 8.0 and limits.data_budget_monthly_usd == 200.0
    assert Path(limits.budget_source).resolve() == PROJECT / "configs" / "budget.toml"
    assert limits.account_id == ACCOUNT and limits.account_env == "IB_ACCOUNT_ID"


def test_data_budget_comes_from_the_budget_file(tmp_path):
    budget = write_budget(tmp_path, data_budget_daily_usd="2.5", data_budget_monthly_usd="60")
    limits = load_limits(write(tmp_path), env={**ENV, "IFD_BUDGET_CONFIG": str(budget)})
    assert (limits.data_budget_daily_usd, limits.data_budget_monthly_usd) == (2.5, 60.0)
    assert limits.budget_source == str(budget)


@pytest.mark.parametrize("name", DATA_BUDGET_LIMITS)
def test_data_budget_in_the_limits_file_is_refused(tmp_path, name):
    message = refused(write(tmp_path, **{name: "8"}))
    assert f"[limits] {name}: the data budget is set in configs/budget.toml" in message


def test_valid_file_loads_and_masks_the_account(tmp_path):
    limits = load_limits(write(tmp_path, max_daily_loss_usd="25.5"), env=ENV)
    assert limits.max_daily_loss_usd == 25.5
    assert isinstance(limits.max_position_contracts, int)
    for text in (repr(limits), str(limits), f"{limits}"):
        assert ACCOUNT not in text and "***" in text
    assert ACCOUNT not in str(limits.guard_settings())
    with pytest.raises(AttributeError):
        limits.max_daily_loss_usd = 100  # frozen


@pytest.mark.parametrize("name", list(HARD_CAPS))
def test_missing_limit_is_refused(tmp_path, name):
    if name in DATA_BUDGET_LIMITS:
        assert f"[budget] {BUDGET_KEYS[name]} is missing" in refused_budget(tmp_path, drop=name)
        return
    message = refused(write(tmp_path, drop=name))
    assert f"{name} is missing" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("max_position_contracts", "2", "max_position_contracts 2 exceeds the hard cap 1"),
        ("max_daily_loss_usd", "50.01", "max_daily_loss_usd 50.01 exceeds the hard cap 50"),
        ("max_total_risk_usd", "500", "max_total_risk_usd 500 exceeds the hard cap 200"),
        ("data_budget_daily_usd", "9", "[budget] daily_usd 9 exceeds the hard cap 8"),
        ("data_budget_monthly_usd", "201", "[budget] monthly_usd 201 exceeds the hard cap 200"),
        ("max_consecutive_losses", "4", "max_consecutive_losses 4 exceeds the hard cap 3"),
        ("max_drawdown_usd", "80", "max_drawdown_usd 80 exceeds the hard cap 50"),
    ],
)
def test_looser_than_hard_cap_is_refused(tmp_path, name, value, expected):
    if name in DATA_BUDGET_LIMITS:
        assert refused_budget(tmp_path, **{name: value}).endswith(expected)
        return
    assert refused(write(tmp_path, **{name: value})).endswith(expected)


@pytest.mark.parametrize("name", list(HARD_CAPS))
@pytest.mark.parametrize("value", ["0", "-1", '"ten"', "true", "nan"])
def test_non_positive_or_non_number_is_refused(tmp_path, name, value):
    if name in DATA_BUDGET_LIMITS:
        message = refused_budget(tmp_path, **{name: value})
        assert f"[budget] {BUDGET_KEYS[name]} must be a positive number" in message
        return
    assert f"{name} must be a positive number" in refused(write(tmp_path, **{name: value}))


def test_fractional_contracts_are_refused(tmp_path):
    assert "max_position_contracts must be a whole number" in refused(write(tmp_path, max_position_contracts="0.5"))


@pytest.mark.parametrize("env", [{}, {"IB_ACCOUNT_ID": ""}, {"IB_ACCOUNT_ID": "   "}, {"OTHER": ACCOUNT}])
def test_account_not_set_is_refused(tmp_path, env):
    message = refused(write(tmp_path), env=env)
    assert "account id not set" in message and "IB_ACCOUNT_ID" in message


def test_account_env_missing_is_refused(tmp_path):
    assert "account_env is missing" in refused(write(tmp_path, drop="account_env"))


def test_other_refusals(tmp_path):
    assert refused(write(tmp_path, surprise="1")).endswith("[limits] unknown setting(s) surprise")
    assert "[budget] daily_usd 8 exceeds monthly_usd 5" in refused_budget(tmp_path, data_budget_monthly_usd="5")
    empty = tmp_path / "empty.toml"
    empty.write_text("[other]\n")
    assert refused(empty).endswith("[limits] is missing")
    assert refused(tmp_path / "nope.toml").endswith("no such limits file")
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\n")
    assert "invalid TOML" in refused(bad)
