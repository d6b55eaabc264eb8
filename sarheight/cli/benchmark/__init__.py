"""``sarheight benchmark``: how fast simulate and reconstruct run on this machine, optionally against another
version."""

from __future__ import annotations

import argparse

from ..options import add_quiet

NAME = "benchmark"
HELP = "time simulate and reconstruct on this machine (synthetic mountains; no data needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--side", type=int, default=None,
                        help="DEM cells a side of the case whose DEM spacing is the pixel spacing (10 m; "
                             "default 2048; 0 leaves it out)")
    parser.add_argument("--coarse-side", type=int, default=None,
                        help="DEM cells a side of the case with a DEM 3x coarser than the pixels (30 m cells "
                             "under 10 m pixels; default 1024; 0 leaves it out)")
    parser.add_argument("--projection", choices=("exact", "bilinear", "both"), default="both",
                        help="how the facets reach the radar pixels in the timed runs: exact (the overlap of each "
                        "facet's footprint with the pixels), bilinear (splatting of facet centres, faster), or both "
                        "(default)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each step (default 5)")
    parser.add_argument("--against", metavar="TREE_OR_REVISION", default=None,
                        help="also time another version, run by run in turn with this one: the folder of "
                             "another sarheight source tree, or a git revision (HEAD~1, a tag) of this checkout")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="leave out the reference peer (sarsen's terrain correction, timed on the same "
                             "scenes where sarsen is installed)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a version's worker that takes longer than this over one preparation or "
                             "run (default 1800: a first run compiles the kernels)")
    parser.add_argument("--threads", default=None, metavar="N,M",
                        help="also time on these thread counts (e.g. 1,2), each in a worker of its own: every row "
                        "then gives the efficiency of the most threads over the fewest")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="also time this version on a GPU (cuda, cuda:N: torch there, the passes it lacks yet on "
                        "the CPU's kernels), run by run in turn with the CPU: every row then gives the GPU's speed-up "
                        "and the card's name")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: sides 256 and 128, 2 repeats; its M cells/s understate the speed "
                        "(fixed costs weigh on small DEMs): compare speeds at the default sides")
    parser.add_argument("--out", default=None, help="also write the report as JSON to this file")
    parser.add_argument("--plot", default=None, help="also draw the figures as a bar chart (PNG) in this file")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    import json

    from ...errors import SarHeightError
    from ...io import atomic_path
    from ...paths import check_outputs, check_writable_folder
    from .timing import PROJECTIONS, WORKER_TIMEOUT, format_table, plot_report, run_benchmark

    given = [option for option, value in (("--side", args.side), ("--coarse-side", args.coarse_side),
                                          ("--repeats", args.repeats)) if value is not None]
    if args.quick and given:
        raise SarHeightError(f"--quick times sides 256 and 128, 2 repeats, and would ignore {', '.join(given)}: "
                             "leave out --quick to time the sizes you give, or leave them out")
    side, coarse_side, repeats = (256, 128, 2) if args.quick else (
        2048 if args.side is None else args.side, 1024 if args.coarse_side is None else args.coarse_side,
        5 if args.repeats is None else args.repeats)
    for name, value, least in (("--side", side, 0), ("--coarse-side", coarse_side, 0), ("--repeats", repeats, 1)):
        if value < least or (name != "--repeats" and 0 < value < 16):
            raise SarHeightError(f"{name} {value}: give at least 16 cells a side (0 leaves the case out)"
                                 if name != "--repeats" else f"--repeats {value}: give 1 or more")
    timeout = WORKER_TIMEOUT if args.timeout is None else args.timeout
    if not 0 < timeout < 1e7:  # select() takes no infinite or astronomic timeout
        raise SarHeightError(f"--timeout {args.timeout:g}: give a positive number of seconds (below 1e7)")
    cases = {name: n for name, n in (("pixel", side), ("coarse", coarse_side)) if n}
    if not cases:
        raise SarHeightError("--side 0 and --coarse-side 0 leave nothing to time; give one of them")
    from ...io import check_memory
    from ...simulate.engine import BYTES_PER_CELL

    for name, n in cases.items():
        # The DEM, its simulation and the reconstruction of the largest case, before any is made.
        check_memory(n * n * BYTES_PER_CELL, f"--{'side' if name == 'pixel' else 'coarse-side'} {n} (a {n} x {n} "
                     "DEM, simulated and reconstructed)", hint="; give a smaller side")
    if args.device is not None:
        from ...compute import compute_for

        if compute_for(args.device).backend == "numba":  # a GPU the machine lacks is refused here
            raise SarHeightError(f"--device {args.device}: the CPU is timed already; give cuda or cuda:N to time "
                                 "a GPU beside it")
    outputs = [(path, name) for path, name in ((args.out, "--out"), (args.plot, "--plot")) if path]
    check_outputs(outputs)
    for path, name in outputs:
        check_writable_folder(path, name)
    projections = PROJECTIONS if args.projection == "both" else (args.projection,)
    try:
        threads = tuple(int(part) for part in args.threads.split(",")) if args.threads else None
    except ValueError:
        raise SarHeightError(f"--threads {args.threads!r}: give thread counts separated by commas, e.g. 1,2") from None
    report = run_benchmark(cases=cases, projections=projections, repeats=repeats, against=args.against,
                           peer=args.peer, timeout=timeout, threads=threads, device=args.device,
                           say=(lambda _line: None) if args.quiet else print)
    if not args.quiet:
        print()
        print(format_table(report))
        if args.quick:
            print("(--quick: sides 256 and 128, where fixed costs weigh; the default sides, 2048 and 1024, give the "
                  "speeds benchmarks/README.md quotes)")
    if args.out:
        with atomic_path(args.out) as path:
            path.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot_report(report, args.plot)
    return 0
