"""``ibcm-lab matrix``: the sweep, the grid, folding and the exports.

The full default matrix runs once (all cores); smaller selections check single cells next to
their twins, the exports and the command line.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import UsageError
from lab.matrix.sweep import make_selection, run_matrix, scenario_for
from lab.report.jsonout import step_dict
from lab.report.matrixout import grid_table, matrix_dict, render_csv, render_json
from lab.results.grid import DIMENSIONS, SITUATIONS
from lab.results.matrix import Cell, MatrixResult, Row, fold

SMALL = {"cdp": ["ldap", "http-internet"], "names": ["both"], "smsmp": ["https"],
         "ccmhostname": ["given"], "nocrlcheck": ["yes"]}


@pytest.fixture(scope="module")
def full(certs_dir: Path) -> MatrixResult:
    return run_matrix(make_selection({}), certs=certs_dir, jobs=2)


@pytest.fixture(scope="module")
def small(certs_dir: Path) -> MatrixResult:
    return run_matrix(make_selection(SMALL), certs=certs_dir, jobs=1)


def row(result: MatrixResult, **config: str) -> Row:
    matches = [r for r in result.rows if all(r.config[k] == v for k, v in config.items())]
    assert len(matches) == 1, config
    return matches[0]


def test_full_default_matrix_fills_every_cell(full: MatrixResult) -> None:
    expected_rows = 1
    for dim in DIMENSIONS:
        expected_rows *= len(dim.values)
    assert len(full.rows) == expected_rows == 240
    assert full.cells == 240 * len(SITUATIONS)
    assert all(c.short for r in full.rows for c in r.cells.values())
    assert full.jobs == 2
    # every short name used is explained in one line
    used = {c.short for r in full.rows for c in r.cells.values()} - {"ok"}
    assert used and used <= set(full.legend())
    assert all(full.legend()[s] for s in used)


def test_full_matrix_reproduces_the_seed(full: MatrixResult) -> None:
    base = {"names": "both", "smsmp": "https", "ccmhostname": "given", "nocrlcheck": "yes"}
    # seed §4: AD CS default CDPs, the box checked: the internet client fails, inside is fine
    default_on = row(full, cdp="ldap+http-intranet", site_crl="on", **base).cells
    assert [default_on[s.key].short for s in SITUATIONS] == ["ok", "ok", "ok", "CRL-OFFLINE"]
    # (failed_step counts ccmexec's automatic registration and site refresh after install)
    assert default_on["internet"].failed_step == 6
    assert default_on["internet"].steps[5]["number"] == "4"
    # ...and its twins: the box cleared, or an HTTP CDP published to the internet
    assert row(full, cdp="ldap+http-intranet", site_crl="off", **base).shorts == ("ok",) * 4
    assert row(full, cdp="ldap+http-internet", site_crl="on", **base).shorts == ("ok",) * 4
    # seed §4: a workgroup client with an LDAP-only CDP and no /NoCRLCheck fails at install
    wg = row(full, cdp="ldap", site_crl="on", names="both", smsmp="https",
             ccmhostname="given", nocrlcheck="no").cells["workgroup"]
    assert (wg.short, wg.failed_step) == ("CRL-OFFLINE", 1)
    # seed §2: one name only
    one = row(full, cdp="http-internet", site_crl="on", names="intranet", smsmp="https",
              ccmhostname="given", nocrlcheck="yes").cells
    assert [one[s.key].short for s in SITUATIONS] == ["ok", "ok", "ok", "NAME"]
    # seed §3: SMSMP without https://
    plain = row(full, cdp="http-internet", site_crl="off", names="both", smsmp="plain",
                ccmhostname="given", nocrlcheck="yes").cells["intranet"]
    # ccmexec's own registration after the install (step 1a) is the first to get 403.4
    assert (plain.short, plain.failed_step) == ("403.4", 2)
    assert (plain.steps[1]["number"], plain.steps[1]["automatic"]) == ("1a", True)
    # seed §3 supplement 2: without CCMHOSTNAME the roaming client learns the internet MP
    learned = row(full, cdp="http-internet", site_crl="on", names="both", smsmp="https",
                  ccmhostname="omitted", nocrlcheck="yes").cells["internet"]
    assert learned.short == "ok"
    assert learned.steps[5]["number"] == "4"
    assert learned.steps[5]["mp"] == "IBCM-Internet.public.com"


def test_cells_carry_the_run_json_step_fields(small: MatrixResult, certs_dir: Path) -> None:
    import asyncio

    from lab.run import run_loaded

    one = asyncio.run(run_loaded([scenario_for(small.rows[0].config, ("intranet",))],
                                 certs=certs_dir))
    reference_keys = set(step_dict(one.scenarios[0].clients[0].steps[0]))
    for r in small.rows:
        for cell in r.cells.values():
            # the row's four steps, with ccmexec's two automatic ones after a good install
            assert len(cell.steps) == (6 if cell.steps[0]["outcome"] == "ok" else 4)
            assert all(set(s) == reference_keys for s in cell.steps)


def test_small_selection_cells_and_twins(small: MatrixResult) -> None:
    assert len(small.rows) == 4  # 2 CDP layouts x site CRL on/off
    ldap_on = row(small, cdp="ldap", site_crl="on").cells
    assert ldap_on["internet"].short == "CRL-OFFLINE"
    assert "CRYPT_E_REVOCATION_OFFLINE" in ldap_on["internet"].explanation
    assert "Clients check the certificate revocation list" in ldap_on["internet"].fix
    assert ldap_on["workgroup"].short == "CRL-OFFLINE"  # after the site refresh
    assert ldap_on["workgroup"].failed_step == 4
    assert row(small, cdp="ldap", site_crl="off").shorts == ("ok",) * 4
    assert row(small, cdp="http-internet", site_crl="on").shorts == ("ok",) * 4


def _synthetic(selection_values: dict[str, list[str]]) -> tuple[list[Row], object]:
    selection = make_selection(selection_values, ["intranet"])
    rows = []
    for config in selection.rows:
        short = "CRL-OFFLINE" if config["cdp"] == "ldap" and config["site_crl"] == "on" else "ok"
        rows.append(Row(config, {"intranet": Cell("intranet", "ok" if short == "ok" else "fail",
                                                  short, None, "", "", [])}))
    return rows, selection


def test_fold_merges_only_rows_with_identical_cells() -> None:
    values = {"cdp": ["ldap", "http-internet"], "site_crl": ["on", "off"],
              "nocrlcheck": ["yes", "no"], "names": ["both"], "smsmp": ["https"],
              "ccmhostname": ["given"]}
    rows, selection = _synthetic(values)
    folded = fold(rows, selection)  # type: ignore[arg-type]
    shown = sorted((c["cdp"], c["site_crl"], c["nocrlcheck"], r.shorts[0]) for c, r in folded)
    # /NoCRLCheck never matters here: always "*". Dimensions fold in their order (CDP
    # first), so the site-off rows merge across CDP layouts and the ldap/on row stands alone.
    assert shown == [("*", "off", "*", "ok"), ("http-internet", "on", "*", "ok"),
                     ("ldap", "on", "*", "CRL-OFFLINE")]
    # the twin: with folding off nothing is merged
    assert len(rows) == 8 and all("*" not in r.config.values() for r in rows)


def test_exports_json_and_csv(small: MatrixResult) -> None:
    doc = json.loads(render_json(small))
    assert doc == matrix_dict(small) | {"rows": doc["rows"]}
    assert doc["cells"] == 16 and [s["key"] for s in doc["situations"]] == [
        s.key for s in SITUATIONS]
    first = doc["rows"][0]["cells"]["internet"]
    assert {"situation", "outcome", "short", "failed_step", "explanation", "fix",
            "steps"} <= set(first)
    assert doc["legend"]["CRL-OFFLINE"].startswith("CRYPT_E_REVOCATION_OFFLINE")
    lines = list(csv.DictReader(io.StringIO(render_csv(small))))
    assert len(lines) == 16
    failing = [line for line in lines if line["cell"] != "ok"]
    assert failing and all(line["error_name"] == "CRYPT_E_REVOCATION_OFFLINE"
                           and line["error_code"] == "0x80092013" for line in failing)
    assert all(line["cell"] == "ok" for line in lines
               if line["site_crl"] == "off" or line["cdp"] == "http-internet")
    assert {line["revocation_checked"] for line in failing} == {"True"}


def test_grid_renders_every_cell(small: MatrixResult) -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, no_color=True)
    console.print(grid_table(small, fold_rows=False))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.count("CRL-OFFLINE") == sum(
        1 for r in small.rows for c in r.cells.values() if c.short == "CRL-OFFLINE")
    assert "\x1b[" not in text


def test_cli_matrix_formats_and_bad_input(certs_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args = ["matrix", "--cdp", "ldap", "--site-crl", "on", "--nocrlcheck", "yes",
            "--names", "both", "--smsmp", "https", "--ccmhostname", "given",
            "--certs", str(certs_dir), "--jobs", "1"]
    assert main([*args, "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "CRL-OFFLINE" in out and "Legend:" in out and "\x1b[" not in out
    target = tmp_path / "m.json"
    assert main([*args, "--format", "json", "--out", str(target)]) == 0
    assert json.loads(target.read_text())["cells"] == 4
    assert main([*args, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("cdp,site_crl,")
    # bad input: exit 2 with the flag and the allowed values named
    assert main(["matrix", "--cdp", "ftp", "--certs", str(certs_dir)]) == 2
    err = capsys.readouterr().err
    assert "--cdp: expected values from ldap, ldap+http-intranet" in err and "'ftp'" in err
    assert main(["matrix", "--clients", "moon", "--certs", str(certs_dir)]) == 2
    assert "--clients: expected values from intranet, workgroup, vpn, internet" in (
        capsys.readouterr().err)
    assert main([*args, "--jobs", "0"]) == 2
    assert "--jobs expects" in capsys.readouterr().err


def test_selection_rejects_unknown_values() -> None:
    with pytest.raises(UsageError, match="--names: expected values from both, intranet, "
                                         "internet, wildcard, got 'all'"):
        make_selection({"names": ["all"]})
    assert make_selection({"names": ["internet", "internet"]}).values["names"] == ("internet",)


def test_wildcard_names_are_a_value_to_ask_for(certs_dir: Path) -> None:
    # Not swept by default (the full grid keeps 240 rows), taken when asked for.
    assert "wildcard" not in make_selection({}).values["names"]
    choice = {**SMALL, "cdp": ["http-internet"], "names": ["wildcard", "intranet"],
              "site_crl": ["off"]}
    result = run_matrix(make_selection(choice, ["internet"]), certs=certs_dir, jobs=1)
    scenario = scenario_for(row(result, names="wildcard").config, ["internet"])
    assert scenario.mp.cert.san == ("IBCM-Intra.contoso.local", "*.public.com")
    # *.public.com covers IBCM-Internet.public.com; the intranet-only twin does not
    assert row(result, names="wildcard").cells["internet"].short == "ok"
    assert row(result, names="intranet").cells["internet"].short != "ok"
