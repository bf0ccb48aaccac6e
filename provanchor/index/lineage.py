"""Lineage: which runs and files a file came from (upstream), or fed into (downstream).

The graph is bipartite: files and runs, joined by the inputs and outputs that
run records list. Edges always point the way data flowed (input: file → run,
output: run → file), whichever direction is walked.

The walk is a breadth-first search with one SQL query per half-level over the
``run_edges`` indexes (all frontier files at once, then all frontier runs at
once), not one query per node, so its cost grows with the size of the answer,
not of the index. Visited sets make cycles (a run rewriting its own input)
terminate. ``depth`` counts runs: depth 1 upstream of a file is the runs that
wrote it and their inputs.

Runs are matched by run id across agents. Run ids are random (a uuid4) so
collisions do not happen by accident, but an agent could reuse another's id:
the graph trusts every agent in the index equally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

from provanchor.errors import BadDepth as BadDepth
from provanchor.errors import BadDirection as BadDirection
from provanchor.index.query import BadLocation, encoded_path
from provanchor.index.store import IndexStore, location_path

__all__ = ["BadDepth", "BadDirection", "Direction", "Graph", "lineage"]

Direction = Literal["upstream", "downstream"]
_CHUNK = 500  # bound parameters per IN (...): far below every SQLite build's limit
_DEFAULT_MAX_NODES = 10_000


@dataclass
class Graph:
    """Nodes ``{"id", "kind": "file"|"run", "location"|"run_id", "label"}`` and edges ``{"from", "to", "kind"}``.

    File nodes are identified by their location URI, run nodes by ``run:<run id>``.
    ``truncated`` is set when the walk stopped at ``max_nodes`` with files left to explore.
    """

    nodes: list[dict[str, str]] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)
    truncated: bool = False

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"nodes": self.nodes, "edges": self.edges}
        if self.truncated:
            data["truncated"] = True
        return data

    def to_dot(self) -> str:
        """Graphviz text: files as notes, runs as rounded boxes, data flowing left to right."""
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for node in self.nodes:
            shape = "note" if node["kind"] == "file" else "box, style=rounded"
            tooltip = node.get("location") or node.get("run_id", "")
            lines.append(
                f"  {_quote(node['id'])} [shape={shape}, label={_quote(node['label'])}, tooltip={_quote(tooltip)}];"
            )
        for edge in self.edges:
            lines.append(f"  {_quote(edge['from'])} -> {_quote(edge['to'])} [label={_quote(edge['kind'])}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def lineage(
    store: IndexStore,
    location: str,
    direction: Direction | str,
    depth: int,
    max_nodes: int = _DEFAULT_MAX_NODES,
) -> Graph:
    """Walk the run graph from a file, up to ``depth`` runs away.

    ``location`` is a URI, or an absolute path meaning that path on every host
    (as in queries). Upstream follows file → runs that wrote it → their inputs;
    downstream follows file → runs that read it → their outputs. A file read
    by thousands of runs would make an unreadable graph and a slow answer, so
    the walk stops after the level that brings it to ``max_nodes`` nodes (it
    may overshoot by that level) and then sets ``truncated`` if files remained
    to explore.
    """
    if direction not in ("upstream", "downstream"):
        raise BadDirection(f"lineage direction must be upstream or downstream, got {direction!r:.40}")
    if depth < 0:
        raise BadDepth(f"lineage depth must be 0 or more, got {depth}")
    walk = _Walk(store, max_nodes)
    frontier = walk.start(location)
    # Upstream, a file's runs are those that output it and the next files are their inputs; downstream, reversed.
    to_runs, from_runs = ("out", "in") if direction == "upstream" else ("in", "out")
    for _ in range(depth):
        runs = walk.runs_touching(frontier, to_runs)
        if not runs:
            break
        frontier = walk.files_of(runs, from_runs)
        if walk.full():
            walk.graph.truncated = bool(frontier)
            break
    walk.label_runs()
    return walk.graph


class _Walk:
    """BFS state: the graph so far and what has been visited."""

    def __init__(self, store: IndexStore, max_nodes: int) -> None:
        self.store = store
        self.max_nodes = max_nodes
        self.graph = Graph()
        self.files: set[str] = set()
        self.runs: dict[str, dict[str, str]] = {}
        self.edges: set[tuple[str, str, str]] = set()

    def full(self) -> bool:
        return len(self.graph.nodes) >= self.max_nodes

    def start(self, location: str) -> list[str]:
        if "://" in location:
            starts = [location]
        elif location.startswith("/"):
            starts = self._locations_of_path(encoded_path(location)) or [location]
        else:
            raise BadLocation(f"lineage needs a URI or an absolute path, got {location!r:.80}")
        for start in starts:
            self._add_file(start)
        return starts

    def _locations_of_path(self, path: str) -> list[str]:
        """Every location of a host-agnostic path: from run edges, else from records."""
        rows = self.store.read("SELECT DISTINCT location FROM run_edges WHERE path = ? ORDER BY location", (path,))
        if not rows:
            rows = self.store.read("SELECT DISTINCT location FROM records WHERE path = ? ORDER BY location", (path,))
        return [str(row[0]) for row in rows]

    def runs_touching(self, files: list[str], direction: str) -> list[str]:
        """Runs having one of ``files`` as input ('in') or output ('out'); returns the new ones."""
        rows = self._select(
            "SELECT location, run_id FROM run_edges WHERE direction = ? AND location IN", files, direction
        )
        fresh: list[str] = []
        for location, run_id in sorted(rows):
            node = "run:" + run_id
            if run_id not in self.runs:
                self.runs[run_id] = self._add_node({"id": node, "kind": "run", "run_id": run_id, "label": run_id[:12]})
                fresh.append(run_id)
            if direction == "out":
                self._add_edge(node, location, "output")
            else:
                self._add_edge(location, node, "input")
        return fresh

    def files_of(self, runs: list[str], direction: str) -> list[str]:
        """The inputs ('in') or outputs ('out') of ``runs``; returns the files not visited before."""
        rows = self._select("SELECT run_id, location FROM run_edges WHERE direction = ? AND run_id IN", runs, direction)
        fresh: list[str] = []
        for run_id, location in sorted(rows):
            node = "run:" + run_id
            if location not in self.files:
                self._add_file(location)
                fresh.append(location)
            if direction == "in":
                self._add_edge(location, node, "input")
            else:
                self._add_edge(node, location, "output")
        return fresh

    def label_runs(self) -> None:
        """Runs' labels in one pass at the end (name or command line, from the ``runs`` table)."""
        rows = self._select("SELECT run_id, label FROM runs WHERE run_id IN", list(self.runs))
        for run_id, label in rows:
            self.runs[run_id]["label"] = label

    def _select(self, prefix: str, values: list[str], *leading: object) -> list[tuple[str, str]]:
        """Run ``prefix (?, ?, ...)`` over ``values`` in chunks; ``leading`` binds the prefix's own ``?``."""
        rows: list[tuple[str, str]] = []
        for offset in range(0, len(values), _CHUNK):
            chunk = values[offset : offset + _CHUNK]
            sql = f"{prefix} ({', '.join('?' * len(chunk))})"
            rows.extend((str(a), str(b)) for a, b in self.store.read(sql, [*leading, *chunk]))
        return rows

    def _add_file(self, location: str) -> None:
        self.files.add(location)
        self._add_node({"id": location, "kind": "file", "location": location, "label": _file_label(location)})

    def _add_node(self, node: dict[str, str]) -> dict[str, str]:
        self.graph.nodes.append(node)
        return node

    def _add_edge(self, source: str, target: str, kind: str) -> None:
        key = (source, target, kind)
        if key not in self.edges:
            self.edges.add(key)
            self.graph.edges.append({"from": source, "to": target, "kind": kind})


def _file_label(location: str) -> str:
    """The file name, decoded for reading (the node id keeps the exact URI)."""
    path = location_path(location) if "://" in location else location
    if path is None:
        return location
    return unquote(os.path.basename(path)) or path
