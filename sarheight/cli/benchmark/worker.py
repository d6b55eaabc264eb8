"""The benchmark's worker process: it prepares scenes and times runs on request, one JSON
line each way on stdin and stdout (:func:`serve`).

:class:`sarheight.cli.benchmark.timing.Worker` starts this file by path (``--serve TREE``): for another
version, ``TREE`` is its source tree, whose ``sarheight`` (and ``kernels`` as
``sarheight.kernels``) it imports; this file and its siblings (the scenes, the peer) are
loaded by path and import nothing of sarheight at their top, so that earlier commits can
be timed through the public API every version has.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _sibling(name: str) -> Any:
    """This package's module ``name``: imported where this file is a module of the package,
    loaded by path where it runs as a worker's script (no package to import from)."""
    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    qualified = f"sarheight_benchmark_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


synthetic = _sibling("scenes")
peer = _sibling("peer")


class _TreeFinder(importlib.abc.MetaPathFinder):
    """Imports ``sarheight`` from the source tree ``root`` (``root/sarheight``) and its
    kernels (``root/kernels``) as ``sarheight.kernels``, as an install of it maps them."""

    def __init__(self, root: Path):
        self.locations = {"sarheight": root / "sarheight", "sarheight.kernels": root / "kernels"}

    def find_spec(self, name, path, target=None):
        location = self.locations.get(name)
        if location is None:
            return None
        return importlib.util.spec_from_file_location(name, location / "__init__.py",
                                                      submodule_search_locations=[str(location)])


def prepare_peer(case: str, side: int, runs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The worker's answer to preparing the reference peer on a case: its run (put in
    ``runs`` under ``PEER_STEP``) made and run once; whether it is installed, and where
    it is but fails, the error (the run goes on without it)."""
    if importlib.util.find_spec(peer.PEER) is None:
        return {"installed": False}
    try:
        from sarheight.simulate import simulate

        dem, geometry = synthetic.synthetic_scene(side, synthetic.CASES[case])
        observation = synthetic.speckled(simulate(dem, geometry, projection="bilinear", progress=False))
        threads = peer.peer_threads()
        chunks = peer.peer_chunks(dem.shape, threads)
        runs[peer.PEER_STEP] = peer.peer_run(dem, geometry, observation, chunks,
                                             line_spacing_m=synthetic.PIXEL_SPACING)
        runs[peer.PEER_STEP]()
        return {"installed": True, "version": sys.modules[peer.PEER].__version__, "cells": int(dem.size),
                "threads": min(threads, len(chunks[0]) * len(chunks[1])),
                "chunks": [max(chunks[0]), max(chunks[1])]}
    except Exception as error:  # a broken install of the peer: say so, time the rest
        return {"installed": True, "error": f"{type(error).__name__}: {error}"}


def serve(tree: str | None, device: str | None = None, backend: str | None = None) -> None:
    """The worker's loop: prepare scenes and time runs on request (one JSON line each way).

    Requests: ``{"op": "prepare", "case", "side", "projection"}`` builds the scene, runs
    both steps once (compilation, first touch) and answers the version, cells, oversampling
    factor and threads; ``{"op": "time", "case", "side", "projection", "step"}`` answers the
    wall time (s) of one warm run and the load average just before it. The projection
    ``PEER`` prepares the reference peer's run instead (step ``PEER_STEP``), or answers
    that it is not installed. ``device`` (and its ``backend``, where named): both steps
    run there (this version only; its preparation answers the card and where each pass
    ran).
    """
    # Answers go to the pipe the parent reads; anything else printed (by Python or by
    # native code, on descriptor 1) to stderr, so that it cannot break the protocol.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if tree:
        sys.meta_path.insert(0, _TreeFinder(Path(tree)))
    import numba

    from sarheight.layover import reconstruct  # the name every version has
    from sarheight.simulate import simulate

    package = sys.modules["sarheight"]  # this tree's, or the one installed

    scenes: dict[tuple[str, int, str], dict[str, Any]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["case"], int(request["side"]), request["projection"])
        if request["op"] == "prepare" and key[2] == peer.PEER:
            answer = prepare_peer(key[0], key[1], scenes.setdefault(key, {}))
        elif request["op"] == "prepare":
            dem, geometry = synthetic.synthetic_scene(key[1], synthetic.CASES[key[0]])
            projection = key[2]
            simulation = simulate(dem, geometry, projection=projection, progress=False)
            observation = synthetic.speckled(simulation)
            # By keyword: the versions compared may order the arguments differently; a device
            # only where one is asked for (earlier versions have no such keyword).
            on: dict[str, Any] = {}
            if device:
                from sarheight.compute import compute_for

                on["device"] = compute_for(device, backend or None)
            runs: dict[str, Callable[[], Any]] = {
                "simulate": lambda d=dem, g=geometry, p=projection, k=on: simulate(d, g, projection=p,
                                                                                   progress=False, **k),
                "reconstruct": lambda o=observation, d=dem, g=geometry, p=projection, k=on: reconstruct(
                    sar=o, dem=d, geometry=g, projection=p, progress=False, **k),
            }
            result = runs["reconstruct"]()
            scenes[key] = runs
            answer = {"version": getattr(package, "__version__", "?"), "cells": int(dem.size),
                      "oversample": int(result.attrs.get("oversample", 0)),
                      "radar_pixels": int(simulation.sizes["line"] * simulation.sizes["sample"]),
                      "threads": numba.get_num_threads(), "source": str(Path(package.__file__).parent)}
            if device:
                answer.update(card=on["device"].describe(), computed_on=result.attrs.get("computed_on", ""))
            del simulation, result
        else:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            scenes[key][request["step"]]()
            answer = {"seconds": time.perf_counter() - start, "load": load}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--serve":
    given = [argument or None for argument in sys.argv[2:5]] + [None] * 3
    serve(given[0], given[1], given[2])
