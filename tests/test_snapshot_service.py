"""`provanchor snapshot take | list` on a real network: stored, recorded, anchored, incremental."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from provanchor.formats.cid import CID
from provanchor.formats.snapshot_manifest import decode_snapshot_manifest
from provanchor.home import Home
from provanchor.ipfs.client import IpfsClient
from provanchor.localnet.devagents import enroll_agent
from provanchor.network import load_network

PASSWORD = "snapshot-test"
CLI = [sys.executable, "-m", "provanchor.cli.main"]


def test_take_list_and_incremental(net_home: Home, tmp_path: Path) -> None:
    home, _ = enroll_agent(net_home, tmp_path / "home", "snapper", PASSWORD)
    env = {**os.environ, "PROVANCHOR_HOME": str(home.root), "PROVANCHOR_PASSWORD": PASSWORD}
    tree = tmp_path / "tree"
    for i in range(20):
        (tree / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 4}" / f"f{i}.txt").write_text(f"content {i}\n" * (i + 1))
    os.symlink("/etc/passwd", tree / "link")
    time.sleep(1.2)  # the cache trusts files only once their timestamps are safely in the past

    def take(path: Path = tree) -> dict[str, object]:
        done = subprocess.run(
            [*CLI, "snapshot", "take", str(path), "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert isinstance(data, dict)
        return data

    first = take()
    assert set(first) >= {"snapshot_id", "cid", "files"} and first["files_read"] == 20
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("another tree\n")
    assert take(other)["files_read"] == 1  # a snapshot of another tree keeps its own baseline...
    (tree / "d1" / "f1.txt").write_text("changed\n")
    time.sleep(1.2)
    second = take()
    assert second["files_read"] == 1 and second["files_reused"] == 19  # ...and leaves this one's intact
    assert second["cid"] != first["cid"]
    listed = json.loads(
        subprocess.run(
            [*CLI, "snapshot", "list", str(tree), "--json"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert [row["snapshot_id"] for row in listed] == [first["snapshot_id"], second["snapshot_id"]]
    ipfs = IpfsClient(load_network(net_home).ipfs_api)
    manifest = decode_snapshot_manifest(ipfs.get_block(CID.parse(str(second["snapshot_id"]))))
    entries = {entry.path: entry for entry in manifest.files}
    assert entries["link"].target == "/etc/passwd"
    changed = entries["d1/f1.txt"]
    assert changed.cid is not None and ipfs.cat(changed.cid) == b"changed\n"
    # the incremental snapshot pinned only its new blocks; with the first snapshot's pins, all of it is pinned
    assert ipfs.is_pinned(CID.parse(str(second["cid"]))) and ipfs.is_pinned(changed.cid)
    assert ipfs.is_pinned(entries["d0/f0.txt"].cid or changed.cid)
    assert "0x" + manifest.state_root().hex() == listed[1]["state_root"]
    everything = json.loads(
        subprocess.run([*CLI, "snapshot", "list", "--json"], env=env, capture_output=True, text=True, check=True).stdout
    )  # without PATH: every snapshot this agent anchored, with the location its manifest names
    assert [(row["snapshot_id"], row["location"]) for row in everything] == [
        (first["snapshot_id"], listed[0]["location"]),
        (everything[1]["snapshot_id"], listed[0]["location"].replace("/tree", "/other")),
        (second["snapshot_id"], listed[1]["location"]),
    ]
    missing = subprocess.run(
        [*CLI, "snapshot", "take", str(tmp_path / "nope")], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
