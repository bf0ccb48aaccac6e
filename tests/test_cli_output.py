"""Output for people (issue 12, item 5): ids never split, ISO times, checksummed addresses, no None,
progress only on a terminal, a fast start that imports nothing heavy."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provanchor.cli import context
from provanchor.cli.context import address, fit_rows, iso_time, render, shorten_middle
from provanchor.cli.main import COMMANDS, cli
from provanchor.cli.progress import progress_bar

CID = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
TX = "0x" + "ab" * 32
ADDRESS_LOWER = "0x" + "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own test vector


def test_an_id_is_shortened_in_the_middle_never_split() -> None:
    short = shorten_middle(CID, 20)
    assert len(short) == 20 and short.startswith(CID[:10]) and short.endswith(CID[-9:]) and "…" in short
    assert shorten_middle(CID, 2) == shorten_middle(CID, 13)  # never below a recognisable length
    assert shorten_middle("short", 20) == "short"


def test_tables_fit_the_width_by_shortening_ids_only() -> None:
    rows = [[CID, TX, "a location with words that may wrap", "7"]]
    fitted = fit_rows(["record", "tx", "location", "seq"], rows, 100)
    assert fitted[0][2] == rows[0][2] and fitted[0][3] == "7"  # free text and numbers untouched
    assert "…" in fitted[0][0] and "…" in fitted[0][1]
    assert fit_rows(["record", "tx", "location", "seq"], rows, 400) == rows  # room enough: nothing cut


def render_table(wide: bool, width: int) -> str:
    out = io.StringIO()
    rows = [[CID, TX, "/data/a/very/long/path/that/may/fold/over/lines.csv"]]
    old = sys.stdout
    os.environ["COLUMNS"] = str(width)
    sys.stdout = out
    try:
        context.emit_table("t", ["record", "tx", "location"], rows, wide=wide)
    finally:
        sys.stdout = old
        del os.environ["COLUMNS"]
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_narrow_table_keeps_each_id_on_one_line(width: int) -> None:
    text = render_table(wide=False, width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    cid_lines = [line for line in lines if CID[:6] in line]
    assert len(cid_lines) == 1, text  # one line holds the (shortened) CID: it was not folded
    assert re.search(r"bafyre\w*…\w+", cid_lines[0]), text


def test_wide_prints_ids_whole() -> None:
    text = render_table(wide=True, width=60)
    assert CID in text and TX in text


def test_times_are_iso_utc_whatever_unit_they_come_in() -> None:
    assert iso_time(1764702189) == "2025-12-02T19:03:09Z"
    assert iso_time(1764702189 * 10**9) == "2025-12-02T19:03:09Z"
    assert iso_time(1764702189.25) == "2025-12-02T19:03:09.250Z"
    assert iso_time("2025-12-02T19:03:09+00:00") == "2025-12-02T19:03:09Z"
    assert iso_time(None) == "-"


def test_addresses_are_checksummed_and_nothing_prints_none() -> None:
    assert address(ADDRESS_LOWER) == ADDRESS
    assert render(ADDRESS_LOWER) == ADDRESS
    assert render(None) == "-" and render([]) == "-" and render([None, 1]) == "-, 1"
    assert render(True) == "yes" and render(b"\x01") == "0x01"


def test_progress_is_drawn_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not sys.stderr.isatty()  # under pytest, as in any pipe
    with progress_bar() as progress:
        assert progress.__name__ == "quiet"
        progress("stage", 1, 2)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar() as progress:
        assert progress.__name__ == "update"  # a real bar on a terminal's stderr
        progress("stage", 1, 2)
        progress("stage", 2, 2)


def test_the_top_level_help_lists_every_command_without_importing_any() -> None:
    code = (
        "import sys\n"
        "from provanchor.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('web3', 'eth_account', 'eth_keys', 'eth_utils', 'py_ecc', 'ipfshttpclient',"
        " 'requests', 'rich.progress', 'provanchor.chain.client') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    for args in (["--help"], ["--version"], ["query", "--help"], ["lineage", "--help"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        assert "HEAVY []" in done.stdout, (args, done.stdout)
    listing = subprocess.run([sys.executable, "-m", "provanchor.cli.main", "--help"], capture_output=True,
                             text=True, check=True).stdout
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", listing, re.M), name


def test_the_command_table_matches_the_commands() -> None:
    ctx = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert short.rstrip(".").split()[0].lower() in (command.help or "").lower(), (name, short, command.help)


def test_every_command_still_answers_help() -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_follow_prints_only_what_changed(net_home: object, tmp_path: Path) -> None:
    from provanchor.home import Home

    assert isinstance(net_home, Home)
    env = {**os.environ, "PROVANCHOR_HOME": str(net_home.root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "provanchor.cli.main", "index", "sync", "--follow", "--interval", "0.2", "--json",
         "--index", str(tmp_path / "follow.sqlite")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        import time

        time.sleep(4)  # about twenty polls with nothing new on the chain
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # the first report, then silence
    assert json.loads(lines[0])["checkpoints"] >= 0
