"""Catalog ingest and listing on the real Databento samples, and every bad-input case."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import databento as db
import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from adapters.databento.dbn_files import decompress
from ifd.cli import main
from tests.support.real_samples import write_esh4_definition

pytestmark = pytest.mark.real_data

ESH4_MBO = "nautilus_trader/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESM4_MBO = "nautilus_trader/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ESM4_DEF = "nautilus_trader/orderbooks_definition.dbn.zst"
ES_OPT_DEFS = ("nautilus_trader/options_definition.dbn.zst", "nautilus_trader/definition-glbx-es-opt.dbn.zst")
ESH1 = "databento_python/GLBX.MDP3_test_data.{}.dbn.zst"

# NautilusTrader BookAction values in the catalog's `action` column.
ADD, UPDATE, DELETE, CLEAR = 1, 2, 3, 4


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ls_json(capsys, catalog: Path) -> dict:
    code, out, _ = run_cli(capsys, "catalog", "ls", "--catalog", str(catalog), "--json")
    assert code == 0
    return json.loads(out)


def tree_state(root: Path) -> dict[str, str]:
    """Every file below root with its content hash: the catalog 'as it was'."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def delta_actions(catalog: Path, instrument: str) -> dict[int, int]:
    files = sorted((catalog / "data" / "order_book_deltas" / instrument).glob("*.parquet"))
    actions = np.concatenate([pq.read_table(f, columns=["action"]).column("action").to_numpy() for f in files])
    values, counts = np.unique(actions, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


@pytest.fixture()
def esh4_catalog(tmp_path, real_file, capsys) -> Path:
    """The real ESH4 2023-12-25 session ingested with its constructed definition."""
    definition = write_esh4_definition(tmp_path / "esh4.definition.dbn.zst")
    catalog = tmp_path / "catalog"
    code, out, err = run_cli(
        capsys, "catalog", "ingest", str(real_file(ESH4_MBO)), str(definition), "--catalog", str(catalog),
    )
    assert code == 0, err
    return catalog


def test_real_esh4_session_ingests_with_counts_per_action(esh4_catalog, real_file, capsys):
    records = db.DBNStore.from_file(real_file(ESH4_MBO)).to_ndarray()
    assert len(records) == 68_792
    by_action = {a.decode(): int((records["action"] == a).sum()) for a in (b"A", b"C", b"M", b"T", b"F")}
    assert by_action == {"A": 29_216, "C": 17_999, "M": 12_233, "T": 2_973, "F": 6_371}

    # One delta per A/C/M record (T and F are not book changes), one trade per T record.
    assert delta_actions(esh4_catalog, "ESH4.GLBX") == {ADD: 29_216, UPDATE: 12_233, DELETE: 17_999}
    listing = ls_json(capsys, esh4_catalog)
    assert listing["data_types"]["order_book_deltas"]["instruments"]["ESH4.GLBX"]["rows"] == 59_448
    assert listing["data_types"]["trade_tick"]["instruments"]["ESH4.GLBX"]["rows"] == 2_973
    assert listing["data_types"]["order_book_deltas"]["start"].startswith("2023-12-25")
    [instrument] = listing["instruments"]
    assert instrument["instrument_id"] == "ESH4.GLBX"
    assert instrument["type"] == "FuturesContract"
    assert instrument["price_increment"] == "0.25"
    assert instrument["multiplier"] == "50"


def test_reingesting_the_same_file_adds_no_rows(esh4_catalog, real_file, tmp_path, capsys):
    before = ls_json(capsys, esh4_catalog)
    code, out, err = run_cli(
        capsys, "catalog", "ingest", str(real_file(ESH4_MBO)), "--catalog", str(esh4_catalog), "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["rows_written_total"] == 0
    assert report["duplicate_rows_skipped"] == 59_448 + 2_973
    assert ls_json(capsys, esh4_catalog)["data_types"] == before["data_types"]


def _write_subset(source: Path, target: Path, rows: slice) -> Path:
    """A DBN file holding a slice of another file's MBO records (same metadata)."""
    raw = decompress(source)
    meta_end = 8 + int.from_bytes(raw[4:8], "little")
    records = np.frombuffer(raw[meta_end:], dtype=np.uint8).reshape(-1, 56)[rows]
    target.write_bytes(zstandard.ZstdCompressor().compress(raw[:meta_end] + records.tobytes()))
    return target


def test_overlapping_files_merge_without_duplicates(tmp_path, real_file, capsys):
    """Two files sharing the middle third of the session give exactly the full session's rows."""
    source = real_file(ESH4_MBO)
    definition = write_esh4_definition(tmp_path / "esh4.definition.dbn.zst")
    n = 68_792
    first = _write_subset(source, tmp_path / "first.mbo.dbn.zst", slice(0, 2 * n // 3))
    second = _write_subset(source, tmp_path / "second.mbo.dbn.zst", slice(n // 3, n))
    catalog = tmp_path / "catalog"
    assert run_cli(capsys, "catalog", "ingest", str(definition), str(first), "--catalog", str(catalog))[0] == 0
    assert run_cli(capsys, "catalog", "ingest", str(second), "--catalog", str(catalog))[0] == 0

    full = tmp_path / "full"
    assert run_cli(capsys, "catalog", "ingest", str(definition), str(source), "--catalog", str(full))[0] == 0
    merged, reference = ls_json(capsys, catalog), ls_json(capsys, full)
    for kind in ("order_book_deltas", "trade_tick"):
        assert merged["data_types"][kind]["rows"] == reference["data_types"][kind]["rows"]
    assert delta_actions(catalog, "ESH4.GLBX") == delta_actions(full, "ESH4.GLBX")
    # Feed order is kept: the merged file equals the one-shot ingest row for row.
    [merged_file] = (catalog / "data" / "order_book_deltas" / "ESH4.GLBX").glob("*.parquet")
    [full_file] = (full / "data" / "order_book_deltas" / "ESH4.GLBX").glob("*.parquet")
    assert pq.read_table(merged_file).equals(pq.read_table(full_file))


def test_esm4_snapshot_ingests_and_replays(tmp_path, real_file, capsys):
    catalog = tmp_path / "catalog"
    code, out, err = run_cli(
        capsys, "catalog", "ingest", str(real_file(ESM4_MBO)), str(real_file(ESM4_DEF)), "--catalog", str(catalog),
    )
    assert code == 0, err
    table = pq.read_table(next((catalog / "data" / "order_book_deltas" / "ESM4.GLBX").glob("*.parquet")))
    actions = table.column("action").to_numpy()
    flags = table.column("flags").to_numpy()
    assert actions[0] == CLEAR
    snapshot = (flags & 32) != 0  # F_SNAPSHOT
    # The file: an R clear, 13,600 snapshot adds, then live A/C/M/T/F (78 more adds among them).
    records = db.DBNStore.from_file(real_file(ESM4_MBO)).to_ndarray()
    dbn_snapshot_adds = int(((records["action"] == b"A") & ((records["flags"] & 32) != 0)).sum())
    assert dbn_snapshot_adds == 13_600
    assert int(((actions == ADD) & snapshot).sum()) == dbn_snapshot_adds
    assert int((actions == ADD).sum()) == 13_678
    assert len(table) == 13_786

    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "backtest", "run", "configs/backtests/demo.toml", "--catalog", str(catalog), "--out", str(run_dir),
    )
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["records_processed"] == 13_786 + 5
    results = summary["strategies"]["FlowCounter-001"]["results"]
    assert results["order_book_deltas"] == 13_786
    assert results["trade_ticks"] == 5


def test_es_options_definitions_become_option_contracts(tmp_path, real_file, capsys):
    catalog = tmp_path / "catalog"
    paths = [str(real_file(p)) for p in ES_OPT_DEFS]
    assert run_cli(capsys, "catalog", "ingest", *paths, "--catalog", str(catalog))[0] == 0
    instruments = {i["instrument_id"]: i for i in ls_json(capsys, catalog)["instruments"]}
    assert set(instruments) == {"ESM4 P5230.GLBX", "ESM4 P5250.GLBX", "ESM4 C3550.GLBX", "ESM4 C4250.GLBX"}
    assert all(i["type"] == "OptionContract" for i in instruments.values())
    assert instruments["ESM4 P5250.GLBX"]["option_kind"] == "PUT"
    assert instruments["ESM4 P5250.GLBX"]["strike"] == 5250.0
    assert instruments["ESM4 C4250.GLBX"]["option_kind"] == "CALL"
    assert instruments["ESM4 C4250.GLBX"]["underlying"] == "ESM4"


def test_other_schemas_ingest_next_to_mbo(tmp_path, real_file, capsys):
    catalog = tmp_path / "catalog"
    paths = [str(real_file(ESH1.format(s))) for s in ("trades", "mbp-1", "tbbo", "statistics", "mbo", "definition")]
    code, out, err = run_cli(capsys, "catalog", "ingest", *paths, "--catalog", str(catalog), "--json")
    assert code == 0, err
    types = ls_json(capsys, catalog)["data_types"]
    assert types["quote_tick"]["rows"] == 8  # 4 MBP-1 + 4 TBBO quotes
    assert types["trade_tick"]["rows"] == 4  # the trades, TBBO and MBP-1 files hold the same 4 trades
    assert types["custom_databento_statistics"]["rows"] == 4
    assert types["order_book_deltas"]["rows"] == 4


# -- bad input: one line naming the file and the reason, non-zero exit, catalog untouched -----


def _not_dbn(source: Path, tmp: Path) -> Path:
    path = tmp / "notes.dbn"
    path.write_text("not market data\n")
    return path


def _truncated(source: Path, tmp: Path) -> Path:
    path = tmp / "cut.dbn.zst"
    path.write_bytes(source.read_bytes()[:20_000])
    return path


def _corrupt(source: Path, tmp: Path) -> Path:
    path = tmp / "corrupt.dbn.zst"
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


BAD_INPUTS = {
    "not_dbn": (_not_dbn, "not a DBN file"),
    "truncated_zst": (_truncated, "truncated zstd data"),
    "corrupt_zst": (_corrupt, "corrupt zstd data"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_files_are_refused_and_catalog_unchanged(case, esh4_catalog, real_file, tmp_path, capsys):
    make, reason = BAD_INPUTS[case]
    bad = make(real_file(ESH4_MBO), tmp_path)
    good_definition = real_file(ESM4_DEF)  # would be written if the bad file did not stop the ingest
    before = tree_state(esh4_catalog)
    code, out, err = run_cli(capsys, "catalog", "ingest", str(good_definition), str(bad), "--catalog", str(esh4_catalog))
    assert code != 0
    line = err.strip()
    assert "\n" not in line
    assert str(bad) in line and reason in line
    assert tree_state(esh4_catalog) == before


def test_mbo_without_definitions_is_refused(esh4_catalog, real_file, capsys):
    before = tree_state(esh4_catalog)
    code, _, err = run_cli(capsys, "catalog", "ingest", str(real_file(ESM4_MBO)), "--catalog", str(esh4_catalog))
    assert code != 0
    assert "\n" not in err.strip()
    assert "ESM4" in err and "no instrument definitions" in err and ESM4_MBO.split("/")[-1] in err
    assert tree_state(esh4_catalog) == before


def test_unsupported_schema_is_refused(esh4_catalog, real_file, capsys):
    before = tree_state(esh4_catalog)
    bars = real_file(ESH1.format("ohlcv-1m"))
    code, _, err = run_cli(capsys, "catalog", "ingest", str(bars), "--catalog", str(esh4_catalog))
    assert code != 0
    assert "\n" not in err.strip()
    assert str(bars) in err and "unsupported schema ohlcv-1m" in err
    assert tree_state(esh4_catalog) == before


def test_catalog_path_that_is_not_a_catalog_is_refused(tmp_path, real_file, capsys):
    a_file = tmp_path / "catalog.txt"
    a_file.write_text("x")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    for target in (a_file, other):
        before = tree_state(tmp_path)
        code, _, err = run_cli(capsys, "catalog", "ingest", str(real_file(ESM4_DEF)), "--catalog", str(target))
        assert code != 0
        assert "\n" not in err.strip() and str(target) in err and "not a" in err and "catalog" in err
        assert tree_state(tmp_path) == before
    code, _, err = run_cli(capsys, "catalog", "ls", "--catalog", str(tmp_path / "missing"))
    assert code != 0 and "no such catalog" in err
