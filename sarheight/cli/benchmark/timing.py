"""The speed benchmark of simulation and reconstruction, run on the user's own machine (``sarheight benchmark``).

Times :func:`sarheight.simulate.simulate` and :func:`sarheight.layover.reconstruct`
warm (after the kernels are compiled and a first run), on synthetic mountains, so that
it needs no data:

- ``pixel``: a DEM of ``side`` x ``side`` 10 m cells under 10 m ground-range pixels (DEM
  spacing = pixel spacing);
- ``coarse``: a DEM of ``coarse_side`` x ``coarse_side`` 30 m cells under the same
  pixels: each cell covers about 3 x 3 pixels, as a 30 m DEM under a Sentinel-1 GRD.

The terrain is 1/f^2 noise, flat beyond 5 km, scaled to an RMS slope of 0.5 (27 degrees),
so that every size has the same layover and shadow fractions; the geometry is a straight
orbit (heading 193 degrees, incidence 30-46 degrees) near Rome; the observation is the
simulated image times 4.4-look gamma speckle. Each (case, projection, step) is timed
``repeats`` times: the best and the median run, DEM cells per second of the median, and
the spread (largest minus smallest over the median). Every figure comes with the
threads the kernels ran on and the load average around it.

Where sarsen is installed, the reference peer is timed on the same scenes: its
radiometric terrain correction (:func:`peer_run`), with the ratio of this version's
speed to it.

With ``against``, the same runs of another version of sarheight (a source tree, such as
a ``git worktree`` of an earlier commit) alternate with this one's run by run, each
version in its own process, so that both see the same machine and load: the ratio of
their medians is the speed-up, measured in one run.

The two versions run in worker processes that this module starts on itself (``serve``):
they read one request a line on stdin and answer one JSON line on stdout. A worker for
another tree imports that tree's ``sarheight`` (and its ``kernels`` as
``sarheight.kernels``) and uses only the public API every version has (``open_dem``,
``RadarGeometry.synthetic``, ``simulate``, ``reconstruct`` with ``progress``), so that
earlier commits can be timed (those since ``progress`` was added: all but the first
few). The module imports nothing of sarheight at its top for that reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .peer import (
    PEER,
    PEER_BOUND,
    PEER_CHUNKS,
    PEER_COMPARED,
    PEER_METHOD,
    PEER_STEP,
    SPEED_OF_LIGHT,
    peer_chunks,
    peer_product,
    peer_run,
    peer_threads,
)
from .report import format_peer_row, format_row, format_table, plot_report, summary
from .scenes import (
    CASES,
    CENTER,
    HEADING,
    INCIDENCE,
    LOOKS,
    OUTER_SCALE_M,
    PIXEL_SPACING,
    PROJECTIONS,
    RMS_SLOPE,
    STEPS,
    grid_transform,
    mountain_terrain,
    radii_of_curvature,
    speckled,
    synthetic_geometry,
    synthetic_scene,
)

__all__ = ["CASES", "CENTER", "HEADING", "INCIDENCE", "LOOKS", "OUTER_SCALE_M", "PEER", "PEER_BOUND", "PEER_CHUNKS",
           "PEER_COMPARED", "PEER_METHOD", "PEER_STEP", "PIXEL_SPACING", "PROJECTIONS", "RMS_SLOPE",
           "SPEED_OF_LIGHT", "STEPS", "WORKER_TIMEOUT", "Worker", "format_peer_row", "format_row", "format_table",
           "grid_transform", "mountain_terrain", "peer_chunks", "peer_product", "peer_run", "peer_threads",
           "plot_report", "radii_of_curvature", "reference_tree", "run_benchmark", "speckled", "summary",
           "synthetic_geometry", "synthetic_scene", "time_peer"]

#: Seconds a worker may take to answer one request (a first preparation compiles the
#: kernels: minutes) before the run stops it as hung.
WORKER_TIMEOUT = 1800.0


class Worker:
    """A worker process timing one version of sarheight (``tree``: its source tree; None:
    the one this module belongs to), stopped as hung when a request takes longer than
    ``timeout`` seconds."""

    def __init__(self, label: str, tree: Path | None, timeout: float = WORKER_TIMEOUT, threads: int | None = None,
                 device: str | None = None, backend: str | None = None):
        self.label = label
        self.tree = tree
        self.timeout = timeout
        self.threads = threads
        self.device = device
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if threads is not None:
            # The kernels' threads (Numba's setting, which sarheight's row blocks follow).
            env["NUMBA_NUM_THREADS"] = str(threads)
        self._scratch = tempfile.TemporaryDirectory(prefix="sarheight-benchmark-")
        # Run this file by path from a neutral directory: never with the package folder
        # first on sys.path (its io.py, distributed.py would shadow other modules).
        self.process = subprocess.Popen(
            [sys.executable, "-c",
             "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
             str(Path(__file__).with_name("worker.py").resolve()), "--serve", str(tree or ""), device or "",
             backend or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=self._scratch.name, env=env)

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        from ...errors import SarHeightError

        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            # One line answers each request, so nothing is left in the pipe's buffer
            # between requests: waiting on the descriptor is waiting for the answer.
            ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
            if not ready:
                self.process.kill()
                what = " ".join(str(request[k]) for k in ("op", "case", "side", "projection", "step") if k in request)
                raise SarHeightError(f"the benchmark's worker for {self.label} gave no answer in {self.timeout:g} s "
                                     f"(to {what}) and was stopped; give --timeout for longer runs")
            answer = self.process.stdout.readline()
        except BrokenPipeError:  # it stopped before reading the request
            answer = ""
        if not answer:
            raise SarHeightError(f"the benchmark's worker for {self.label} stopped (exit status "
                                 f"{self.process.wait()}); its error is printed above")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        self.process.wait()
        self._scratch.cleanup()


@contextlib.contextmanager
def reference_tree(against: str, here: Path) -> Iterator[tuple[str, Path]]:
    """The source tree to compare with: ``against`` itself when it is one (a folder holding
    ``sarheight/__init__.py`` and ``kernels/``), else a git revision of the checkout
    ``here`` belongs to, checked out into a temporary worktree for the run. Yields
    (label, tree)."""
    from ...errors import SarHeightError

    folder = Path(against).expanduser()
    if (folder / "sarheight" / "__init__.py").is_file() and (folder / "kernels").is_dir():
        if not (folder / "kernels" / "__init__.py").is_file():
            raise SarHeightError(f"--against {against}: its kernels/ folder has no __init__.py, so its kernels "
                                 "cannot be imported; give a complete source tree (a checkout of sarheight)")
        yield str(folder), folder.resolve()
        return
    git = shutil.which("git")
    top = subprocess.run([git, "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                         text=True) if git else None
    if top is None or top.returncode != 0:
        raise SarHeightError(f"--against {against}: not a sarheight source tree (a folder with sarheight/ and "
                             "kernels/), and this sarheight is not a git checkout in which it could name a "
                             "revision; give the folder of another checkout")
    root = Path(top.stdout.strip())
    commit = subprocess.run([git, "-C", str(root), "rev-parse", "--short", f"{against}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SarHeightError(f"--against {against}: neither a sarheight source tree nor a revision of the git "
                             f"checkout {root} (git says: {commit.stderr.strip()})")
    short = commit.stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="sarheight-against-"))
    worktree = scratch / short
    try:
        added = subprocess.run([git, "-C", str(root), "worktree", "add", "--detach", "--quiet", str(worktree), short],
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise SarHeightError(f"--against {against}: git could not check out {short} into {worktree} (git says: "
                                 f"{added.stderr.strip()})")
        # A hash, short or full, is its own label; a name gets its hash beside it.
        same = short.startswith(against) or against.startswith(short)
        yield (against if same else f"{against} ({short})"), worktree
    finally:
        if worktree.exists():
            subprocess.run([git, "-C", str(root), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def run_benchmark(*, cases: dict[str, int], projections: tuple[str, ...] = PROJECTIONS, repeats: int = 5,
                  against: str | None = None, peer: bool = True, timeout: float = WORKER_TIMEOUT,
                  threads: tuple[int, ...] | None = None, device: str | None = None, backend: str | None = None,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Time each case (name: DEM side in cells) and projection, both steps, ``repeats``
    runs each, in worker processes; with ``against``, alternating with that version;
    with ``peer``, the reference peer too where it is installed (``report["peer"]``).
    A worker that takes more than ``timeout`` seconds over one request is stopped.
    ``threads`` (e.g. ``(1, 2)``): each version also on these thread counts, in workers
    of their own, alternating with the others; each row then gives the efficiency of the
    most threads over one (``row["efficiency"]``: speed-up over one thread / threads).
    ``device`` (``"cuda"``, ``"cuda:N"``): this version also on that GPU, in a worker of
    its own, alternating with the others; each row then gives its speed-up over the CPU
    (``row["device_speedup"]``) and the report names the card (``report["device"]``);
    ``backend`` names the device's backend (``"torch"`` on ``device="cpu"``: the GPU's code
    on the CPU).

    Returns the report (what :func:`format_table` prints and ``--out`` writes as JSON).
    """
    from ...errors import SarHeightError

    counts = sorted(set(threads or ()))
    if counts and (counts[0] < 1 or counts[-1] > (os.cpu_count() or 1)):
        raise SarHeightError(f"--threads {','.join(map(str, counts))}: give thread counts from 1 to this machine's "
                             f"{os.cpu_count()} cores")

    here = Path(__file__).resolve().parents[3]
    report: dict[str, Any] = {
        "benchmark": "sarheight benchmark", "cpu_count": os.cpu_count(), "repeats": repeats,
        "load_average_at_start": list(os.getloadavg()),
        "setup": {"terrain": f"1/f^2 mountains, RMS slope {RMS_SLOPE}, flat beyond {OUTER_SCALE_M:g} m",
                  "geometry": f"straight orbit, heading {HEADING:g}, incidence {INCIDENCE[0]:g}-{INCIDENCE[1]:g} "
                              f"degrees, {PIXEL_SPACING:g} m ground-range pixels",
                  "cases": {name: f"{CASES[name]:g} m DEM cells" for name in cases},
                  "observation": f"the simulated image times {LOOKS}-look speckle",
                  "timing": "warm runs, one at a time; median and spread over the repeats"},
        "against": against, "versions": {}, "results": [],
        "peer": {"name": PEER, "method": PEER_METHOD, "installed": None, "results": []} if peer else None,
    }
    with contextlib.ExitStack() as stack:
        # The reference first: a bad --against is refused before any worker starts.
        reference = stack.enter_context(reference_tree(against, here)) if against else None
        # Each version on the most threads under its own name (the peer and the speed-up
        # compare those), and on fewer under "<name>, N thread(s)".
        most = counts[-1] if counts else None

        def label(name: str, count: int | None) -> str:
            return name if count == most else f"{name}, {count} thread{'s' * (count > 1)}"

        versions = [("this version", None)] + ([reference] if reference is not None else [])
        workers = []
        for name, tree in versions:
            for count in counts[::-1] or [None]:
                workers.append(Worker(label(name, count), tree, timeout, threads=count))
                stack.callback(workers[-1].close)
        on_device = f"this version on {device}" if device else None
        if on_device:
            workers.append(Worker(on_device, None, timeout, threads=most, device=device, backend=backend))
            stack.callback(workers[-1].close)
        report["threads"] = counts or None
        for case, side in cases.items():
            for projection in projections:
                infos = []
                for worker in workers:
                    say(f"preparing {case} {side}x{side} {projection} for {worker.label} (a first run compiles "
                        "the kernels where they are not cached: minutes)")
                    infos.append(worker.ask(op="prepare", case=case, side=side, projection=projection))
                    if worker.tree is None and Path(infos[-1]["source"]) != Path(__file__).resolve().parents[2]:
                        raise SarHeightError(
                            f"the benchmark's worker imported sarheight from {infos[-1]['source']}, not this one "
                            f"({Path(__file__).resolve().parents[2]}): run the command with the Python of the "
                            "environment this sarheight is installed in")
                    report["versions"][worker.label] = {"version": infos[-1]["version"],
                                                        "source": infos[-1]["source"],
                                                        "threads": infos[-1]["threads"]}
                    if worker.device:
                        report["device"] = {"device": worker.device, "card": infos[-1]["card"],
                                            "computed_on": infos[-1]["computed_on"]}
                for step in STEPS:
                    times: list[list[float]] = [[] for _ in workers]
                    loads: list[float] = []
                    for repeat in range(repeats):
                        # Alternate which version goes first, so that neither always
                        # follows the other's memory traffic.
                        order = range(len(workers)) if repeat % 2 == 0 else reversed(range(len(workers)))
                        for w in order:
                            answer = workers[w].ask(op="time", case=case, side=side, projection=projection,
                                                    step=step)
                            times[w].append(answer["seconds"])
                            loads.append(answer["load"])
                    row = {"case": case, "side": side, "cells": infos[0]["cells"],
                           "radar_pixels": infos[0]["radar_pixels"], "oversample": infos[0]["oversample"],
                           "projection": projection, "step": step, "threads": infos[0]["threads"],
                           "load": [min(loads), max(loads)],
                           "versions": {worker.label: summary(times[w], infos[w]["cells"])
                                        for w, worker in enumerate(workers)}}
                    medians = {name: worker_summary["median"] for name, worker_summary in row["versions"].items()}
                    if against:
                        ours, theirs = (medians[name] for name, _ in versions)
                        row["speedup"] = theirs / ours
                    if on_device:
                        row["device_speedup"] = medians["this version"] / medians[on_device]
                    if len(counts) > 1:
                        row["efficiency"] = {name: medians[label(name, counts[0])] / medians[name] * counts[0] / most
                                             for name, _ in versions}
                    report["results"].append(row)
                    say(format_row(row, [worker.label for worker in workers]))
            if peer and report["peer"]["installed"] is not False:
                peer_row = time_peer(workers[0], case, side, repeats, report, say)
                if peer_row is not None:
                    say(format_peer_row(peer_row))
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def time_peer(worker: Worker, case: str, side: int, repeats: int, report: dict[str, Any],
              say: Callable[[str], None]) -> dict[str, Any] | None:
    """Time the reference peer on one case in ``worker`` (``repeats`` warm runs) and add
    its row to ``report["peer"]``, with this version's speed over the peer's for the runs
    of ``PEER_COMPARED`` already in the report; None (and the report says so) where the
    peer is not installed."""
    say(f"preparing {case} {side}x{side} for the reference peer, {PEER} (where installed)")
    info = worker.ask(op="prepare", case=case, side=side, projection=PEER)
    entry = report["peer"]
    entry["installed"] = info["installed"]
    if not info["installed"]:
        say(f"the reference peer, {PEER}, is not installed: `pip install {PEER}` adds its figure")
        return None
    if "error" in info:
        entry.setdefault("errors", []).append(f"{case} {side}²: {info['error']}")
        say(f"the reference peer, {PEER}, failed on {case} {side}² and is left out there: {info['error']}")
        return None
    entry["version"] = info["version"]
    seconds, loads = [], []
    for _ in range(repeats):
        answer = worker.ask(op="time", case=case, side=side, projection=PEER, step=PEER_STEP)
        seconds.append(answer["seconds"])
        loads.append(answer["load"])
    # "projection" holds the peer's method: the table's column for it.
    row = {"case": case, "side": side, "cells": info["cells"], "projection": PEER_METHOD, "step": PEER_STEP,
           "threads": info["threads"], "chunks": info["chunks"], "load": [min(loads), max(loads)],
           "versions": {f"{PEER} {info['version']}": summary(seconds, info["cells"])}, "this_version_over_peer": {}}
    peer_speed = row["versions"][f"{PEER} {info['version']}"]["cells_per_second"]
    for ours in report["results"]:
        if ours["case"] == case and (ours["projection"], ours["step"]) in PEER_COMPARED:
            row["this_version_over_peer"][f"{ours['step']} {ours['projection']}"] = (
                ours["versions"]["this version"]["cells_per_second"] / peer_speed)
    entry["results"].append(row)
    return row
