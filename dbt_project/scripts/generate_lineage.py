"""Writes docs/LINEAGE.md (a Mermaid flowchart) and docs/figures/lineage.png from dbt's manifest: every
source, seed, model and exposure of the project, grouped by layer, with an arrow from each to what reads it.

    python dbt_project/scripts/generate_lineage.py        # or: make lineage

It runs `dbt parse` into a temporary folder, with an empty MIMIC-IV folder and a warehouse there: parsing
needs no raw data (the on-run-start hooks run only for build, run and seed). Run it after adding or
changing a model, seed, source or exposure; tests/test_lineage.py checks that docs/LINEAGE.md is current.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
REPOSITORY = PROJECT.parent
MARKDOWN = REPOSITORY / "docs" / "LINEAGE.md"
PICTURE = REPOSITORY / "docs" / "figures" / "lineage.png"

# Left to right: (layer, what it is, fill colour). A model's layer is its folder under models/.
LAYERS = [
    ("sources", "raw MIMIC-IV tables, loaded by the on-run-start hook into schema raw", "#e0e0e0"),
    ("seeds", "the project's reference tables (seeds/)", "#fff2cc"),
    ("staging", "one view per raw table, renamed and cleaned", "#cfe2f3"),
    ("intermediate", "mimic-code's Sepsis-3 chain, the lab and vital panel, the window grid", "#d9ead3"),
    ("marts", "the marts, written as Parquet for Feast and the trainer", "#f4cccc"),
    ("exposures", "what reads the marts outside dbt (models/exposures.yml)", "#e4d4f4"),
]
COLOURS = {layer: colour for layer, _, colour in LAYERS}
COLUMN = 2.3  # the picture's column spacing; the figure is about this many inches wide per column


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


def parse_manifest() -> dict:
    """dbt's manifest of the project, from `dbt parse` in a temporary folder (no raw data, no warehouse)."""
    with tempfile.TemporaryDirectory(prefix="sepsis-fusion-lineage-") as tmp:
        work = Path(tmp)
        (work / "mimic").mkdir()
        env = dict(
            os.environ,
            SEPSIS_FUSION_MIMIC_DIR=str(work / "mimic"),
            SEPSIS_FUSION_WAREHOUSE=str(work / "warehouse.duckdb"),
            SEPSIS_FUSION_FEATURES=str(work / "features"),
            SEPSIS_FUSION_SPARK_DIR=str(work / "spark"),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        )
        command = [dbt_executable(), "parse", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
        command += ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]
        result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse of {PROJECT} failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        return json.loads((work / "target" / "manifest.json").read_text(encoding="utf-8"))


def lineage(manifest: dict) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """The nodes (dbt unique_id -> (layer, name)) and the edges (parent, child), both sorted."""
    nodes: dict[str, tuple[str, str]] = {}
    for uid, source in manifest["sources"].items():
        nodes[uid] = ("sources", source["name"])
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] == "seed":
            nodes[uid] = ("seeds", node["name"])
        elif node["resource_type"] == "model":
            layer = node["fqn"][1] if len(node["fqn"]) > 2 else None
            if layer not in ("staging", "intermediate", "marts"):
                raise ValueError(f"{node['original_file_path']}: a model outside staging/, intermediate/, marts/")
            nodes[uid] = (layer, node["name"])
    for uid, exposure in manifest["exposures"].items():
        nodes[uid] = ("exposures", exposure["name"])
    readers = [*manifest["nodes"].items(), *manifest["exposures"].items()]
    edges = {(parent, uid) for uid, node in readers if uid in nodes for parent in node["depends_on"].get("nodes", [])}
    order = {layer: i for i, (layer, _, _) in enumerate(LAYERS)}
    ordered = dict(sorted(nodes.items(), key=lambda item: (order[item[1][0]], item[1][1], item[0])))
    return ordered, sorted((p, c) for p, c in edges if p in nodes)


def mermaid_id(uid: str) -> str:
    """A Mermaid node id from dbt's unique_id: "model.sepsis_fusion.cohort" -> "model_cohort"."""
    kind, _, rest = uid.split(".", 2)
    return re.sub(r"\W", "_", f"{kind}_{rest}")


def mermaid(manifest: dict) -> str:
    """The flowchart: one subgraph per layer, an arrow from each node to each node that reads it."""
    nodes, edges = lineage(manifest)
    exposures = manifest["exposures"]
    lines = ["flowchart LR"]
    for layer in COLOURS:
        members = [uid for uid, (node_layer, _) in nodes.items() if node_layer == layer]
        if not members:
            continue
        lines.append(f'  subgraph {layer}["{layer}"]')
        for uid in members:
            label = nodes[uid][1] + (f" ({exposures[uid]['type']})" if uid in exposures else "")
            lines.append(f'    {mermaid_id(uid)}["{label}"]')
        lines.append("  end")
    lines += [f"  {mermaid_id(parent)} --> {mermaid_id(child)}" for parent, child in edges]
    for layer, colour in COLOURS.items():
        members = [mermaid_id(uid) for uid, (node_layer, _) in nodes.items() if node_layer == layer]
        if members:
            lines.append(f"  classDef layer_{layer} fill:{colour},stroke:#555555,color:#000000")
            lines.append(f"  class {','.join(members)} layer_{layer}")
    return "\n".join(lines) + "\n"


def render_markdown(manifest: dict) -> str:
    nodes, edges = lineage(manifest)
    counts = {layer: sum(1 for node_layer, _ in nodes.values() if node_layer == layer) for layer, _, _ in LAYERS}
    rows = "\n".join(f"| {layer} | {counts[layer]} | {what} |" for layer, what, _ in LAYERS)
    return f"""\
# Lineage of the dbt project

Generated by `dbt_project/scripts/generate_lineage.py` (`make lineage`) from the manifest of `dbt parse`,
which needs no raw data: do not edit this file, regenerate it after adding or changing a model, seed,
source or exposure (tests/test_lineage.py fails until then). An arrow points from a node to each node that
reads it. docs/DBT.md describes the models; the exposures and the marts' contracts are in
`dbt_project/models/exposures.yml` and the marts' schema files.

| layer | nodes | what |
|---|---:|---|
{rows}

![lineage of the dbt project](figures/lineage.png)

```mermaid
{mermaid(manifest)}```
"""


def draw(manifest: dict, path: Path) -> None:
    """The same graph as a picture: layers left to right (a layer with dependencies inside it takes
    several columns), seeds below staging, nodes ordered to keep arrows short, one colour per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.patches import FancyArrowPatch, Patch

    nodes, edges = lineage(manifest)
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)

    # Columns: each layer's nodes by their depth among the layer's own dependencies; seeds share staging's.
    bands = [["sources"], ["staging", "seeds"], ["intermediate"], ["marts"], ["exposures"]]
    columns: list[list[str]] = []
    band_of_column: list[int] = []
    for band, layers in enumerate(bands):
        members = [uid for uid, (layer, _) in nodes.items() if layer in layers]
        inside = graph.subgraph(members)
        depth: dict[str, int] = {}
        for uid in nx.topological_sort(inside):
            depth[uid] = max((depth[p] + 1 for p in inside.predecessors(uid)), default=0)
        for level in range(max(depth.values(), default=-1) + 1):
            columns.append([uid for uid in members if depth[uid] == level])
            band_of_column.append(band)

    # Rows, left to right: each node as near as it may be to the mean row of what it reads, one row apart,
    # in that order (its name breaks ties); a column's seeds go below the rest, after a gap.
    y: dict[str, float] = {}
    for column in columns:
        wanted = {}
        for uid in column:
            placed = [y[p] for p in graph.predecessors(uid) if p in y]
            wanted[uid] = sum(placed) / len(placed) if placed else 0.0
        ordered = sorted(column, key=lambda uid: (nodes[uid][0] == "seeds", wanted[uid], nodes[uid][1]))
        rows: list[float] = []
        for i, uid in enumerate(ordered):
            gap = 2 if i and nodes[uid][0] == "seeds" and nodes[ordered[i - 1]][0] != "seeds" else 1
            rows.append(wanted[uid] if not rows else max(wanted[uid], rows[-1] + gap))
        shift = sum(wanted[uid] - r for uid, r in zip(ordered, rows) if nodes[uid][0] != "seeds") / len(rows)
        y.update({uid: r + shift for uid, r in zip(ordered, rows)})
    low, high = min(y.values()), max(y.values())
    y = {uid: -(value - low) for uid, value in y.items()}  # top down
    height = high - low + 1
    x = {uid: COLUMN * i for i, column in enumerate(columns) for uid in column}

    fig, ax = plt.subplots(figsize=(COLUMN * len(columns) * 0.95, 0.42 * height + 1.4))
    ax.set_xlim(-1.3, COLUMN * (len(columns) - 1) + 1.3)
    ax.set_ylim(-height, 1.4)
    ax.axis("off")
    boxes = {}
    for uid, (layer, name) in nodes.items():
        boxes[uid] = ax.text(
            x[uid],
            y[uid],
            name,
            ha="center",
            va="center",
            fontsize=7,
            zorder=3,
            bbox=dict(boxstyle="round,pad=0.3", facecolor=COLOURS[layer], edgecolor="#555555", linewidth=0.6),
        )
    fig.canvas.draw()
    to_data = ax.transData.inverted()
    half = {}
    for uid, box in boxes.items():
        (left, _), (right, _) = to_data.transform(box.get_bbox_patch().get_window_extent())
        half[uid] = (right - left) / 2
    for parent, child in edges:
        backwards = x[child] <= x[parent]  # a mart read by an intermediate model
        start = (x[parent] + (-half[parent] if backwards else half[parent]), y[parent])
        end = (x[child] + (half[child] if backwards else -half[child]), y[child])
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=7,
                color="#7f7f7f",
                linewidth=0.5,
                alpha=0.7,
                zorder=1,
                connectionstyle="arc3,rad=0.35" if backwards else "arc3,rad=0.0",
            )
        )
    for band, layers in enumerate(bands):
        xs = [COLUMN * i for i, b in enumerate(band_of_column) if b == band]
        ax.text(sum(xs) / len(xs), 0.9, " / ".join(layers), ha="center", fontsize=10, weight="bold")
    ax.legend(
        handles=[Patch(facecolor=colour, edgecolor="#555555", label=layer) for layer, _, colour in LAYERS],
        loc="lower left",
        ncol=len(LAYERS),
        fontsize=8,
        frameon=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    manifest = parse_manifest()
    MARKDOWN.write_text(render_markdown(manifest), encoding="utf-8")
    draw(manifest, PICTURE)
    nodes, edges = lineage(manifest)
    print(f"wrote {MARKDOWN} and {PICTURE} ({len(nodes)} nodes, {len(edges)} edges)")


if __name__ == "__main__":
    main()
