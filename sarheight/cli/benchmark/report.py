"""The benchmark's report: the figures of repeated runs, the table and the plot."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .peer import PEER, PEER_STEP


def summary(seconds: list[float], cells: int) -> dict[str, Any]:
    """Best, median and spread ((max - min) / median) of repeated runs, and DEM cells per
    second of the median run."""
    median = statistics.median(seconds)
    return {"seconds": seconds, "best": min(seconds), "median": median,
            "spread": (max(seconds) - min(seconds)) / median, "cells_per_second": cells / median}


#: Widths of the table's columns: case, DEM side, projection, step; one version's figures.
_CASE, _SIDE, _PROJECTION, _STEP = 6, 6, 8, 11
_FIGURES = len(f"{0.0:6.2f} s {0.0:6.2f} M cells/s ±{0.0:4.0%}")


def format_row(row: dict[str, Any], labels: list[str]) -> str:
    """One line of the table: case, projection, step, then per version the median time,
    M cells/s and spread; the speed-up against the other version; threads and load."""
    cells = (f"{row['case']:{_CASE}s} {str(row['side']) + '²':>{_SIDE}s} {row['projection']:{_PROJECTION}s} "
             f"{row['step']:{_STEP}s}")
    for label in labels:
        s = row["versions"][label]
        cells += f"  {s['median']:6.2f} s {s['cells_per_second'] / 1e6:6.2f} M cells/s ±{s['spread']:4.0%}"
    if "speedup" in row:
        cells += f"  {row['speedup']:7.2f}x"
    if "device_speedup" in row:
        cells += f"  GPU {row['device_speedup']:6.2f}x"
    for label, efficiency in row.get("efficiency", {}).items():
        cells += f"  {label}: {efficiency:4.0%} efficiency"
    return cells + f"  {row['threads']} threads, load {row['load'][0]:.1f}-{row['load'][1]:.1f}"


def format_peer_row(row: dict[str, Any]) -> str:
    """A line of the peer's table: as :func:`format_row`, then this version's speed over
    the peer's for each of its runs compared."""
    label = next(iter(row["versions"]))
    ratios = ", ".join(f"{ratio:.2f}x ({name})" for name, ratio in row["this_version_over_peer"].items())
    line = format_row(row, [label])
    return line + (f"  this version: {ratios}" if ratios else "")


def plot_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """A bar chart of the report, written as a PNG at ``path``: DEM cells per second (the
    median run, the spread as an error bar from the slowest to the fastest run) of each
    case, projection and step, one bar per version, and the reference peer's where it ran."""
    import matplotlib

    from ...plots import save_figure

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = report["results"] + (report["peer"]["results"] if report.get("peer") else [])
    labels = list(dict.fromkeys(label for row in rows for label in row["versions"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) * len(report["versions"])), 4.2))
    width = 0.8 / len(report["versions"])
    for k, label in enumerate(labels):
        x = np.array([i for i, row in enumerate(rows) if label in row["versions"]], dtype=float)
        mine = [row for row in rows if label in row["versions"]]
        rates = [row["cells"] / np.array(row["versions"][label]["seconds"]) / 1e6 for row in mine]
        median = np.array([row["versions"][label]["cells_per_second"] / 1e6 for row in mine])
        low = median - np.array([r.min() for r in rates])
        high = np.array([r.max() for r in rates]) - median
        # The peer's bars stand alone at their rows; the versions' side by side.
        offset = (k - (len(report["versions"]) - 1) / 2) * width if label in report["versions"] else 0.0
        ax.bar(x + offset, median, width, yerr=[low, high], capsize=2, label=label)
    ticks = [f"{r['case']} {r['side']}²\n" + (f"{PEER}\n{r['projection']}" if r["step"] == PEER_STEP
                                                else f"{r['projection']}\n{r['step']}") for r in rows]
    ax.set_xticks(np.arange(len(rows)), ticks, fontsize=7)
    ax.set_ylabel("M DEM cells / s (median; bars: slowest to fastest run)")
    threads = sorted({row["threads"] for row in rows})
    ax.set_title(f"sarheight benchmark: {report['cpu_count']} CPUs, {'/'.join(map(str, threads))} threads, "
                 f"{report['repeats']} runs each", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def format_table(report: dict[str, Any]) -> str:
    """The report as the table the command prints, a header over :func:`format_row`'s lines."""
    labels = list(report["versions"])
    head = (f"{'case':{_CASE}s} {'DEM':>{_SIDE}s} {'proj.':{_PROJECTION}s} {'step':{_STEP}s}"
            + "".join(f"  {label[:_FIGURES]:{_FIGURES}s}" for label in labels)
            + ("  speed-up" if report.get("against") else ""))
    lines = [head] + [format_row(row, labels) for row in report["results"]]
    counts = report.get("threads") or []
    lines.append("median of the runs; ± is the spread (max - min) / median"
                 + ("; speed-up = the other version's median / this one's" if report.get("against") else "")
                 + (f"; efficiency = the speed-up of {counts[-1]} threads over {counts[0]} / {counts[-1] / counts[0]:g}"
                    if len(counts) > 1 else ""))
    device = report.get("device")
    if device:
        lines.append(f"GPU = the CPU's median / the median on {device['card']}; there, {device['computed_on']}")
    peer = report.get("peer")
    for error in (peer or {}).get("errors", []):
        lines.append(f"reference peer: {PEER} failed on {error}")
    if peer and peer["installed"] and peer["results"]:
        lines += ["", f"reference peer: {PEER} {peer['version']}, radiometric terrain correction ({peer['method']}: "
                  "every DEM cell geocoded, its gamma area spread bilinearly over 3 x 3-pixel groups, the image "
                  "geocoded and flattened; no layover or shadow masks, no reallocation)"]
        lines += [format_peer_row(row) for row in peer["results"]]
        lines.append("this version: its median speed over the peer's for the step named (the peer's runs follow "
                     "this version's on each case, in the same run); threads: those its chunks can keep busy")
    elif peer and peer["installed"] is False:
        lines += ["", f"reference peer: {PEER} is not installed (`pip install {PEER}` adds its figure)"]
    return "\n".join(lines)
