"""The ``sarheight`` command: one module per subcommand, the shared options in :mod:`.options`.

Each subcommand module gives ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; :data:`COMMANDS` lists them in the order ``--help`` shows. A command
with ``PASSTHROUGH`` set (``fit``, ``validate``, ``test``: LightningCLI) parses the rest
of the line itself: it gets every argument after its name in ``args.arguments``. A new
subcommand (``fit``, ``predict``, a model's own) is a new module and one line here.
Start-up stays fast because every subcommand imports what it needs (numpy, the physics,
the models) inside ``run``, not at the top of its module.

Errors from the library (:class:`~sarheight.errors.SarHeightError`) are printed as one
line in the command's words (``geoid_grid=`` reads ``--geoid-grid``) with exit status 2,
never a traceback; warnings likewise, while the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._version import __version__
from ..errors import (
    PartialCoverageWarning,
    PlausibilityWarning,
    PriorsOutsideWarning,
    SarHeightError,
    VerticalDatumWarning,
)
from ..paths import check_outputs, check_writable_folder
from . import (
    benchmark,
    buildings,
    compile_kernels,
    configs,
    demo,
    fit,
    geocode,
    lcz,
    reconstruct,
    simulate,
    terrain,
)
from .options import close_stages, companion_path, in_command_words, masks_path, resolve_dem_argument

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (demo, compile_kernels, geocode, simulate, reconstruct, benchmark, *fit.COMMANDS, configs, terrain,
            buildings, lcz)


#: The threading layers Numba accepts in NUMBA_THREADING_LAYER.
NUMBA_THREADING_LAYERS = ("default", "safe", "forksafe", "threadsafe", "tbb", "omp", "workqueue")

#: The options that name input files, by the attribute argparse gives them.
INPUT_OPTIONS = {"dem": "the DEM", "sar": "--sar", "geoid_grid": "--geoid-grid", "geometry": "--geometry",
                 "scene": "--scene", "ckpt": "--ckpt", "priors": "--priors", "scenes": "--scenes",
                 "truth": "--truth", "land_cover": "--land-cover", "priors_geoid_grid": "--priors-geoid-grid",
                 "product": "--product"}

#: The options that name folders of inputs, by attribute, with the files read from them.
INPUT_FOLDERS = {"city": ("s1_*.tif", "s2_*.tif", "height.tif"), "data": ("*.h5",), "scenes": ("*.nc",),
                 "cities": ("*/s1_*.tif", "*/s2_*.tif", "*/height.tif")}


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line, with where to read the options, not
    the whole usage before them."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (the options: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``sarheight`` command and its subcommands."""
    parser = OneLineParser(
        prog="sarheight",
        description="Physics-plus-learning SAR toolkit: radar geometry, layover/shadow and height models.",
    )
    parser.add_argument("--version", action="version", version=f"sarheight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        passthrough = getattr(command, "PASSTHROUGH", False)
        # The help line is also the description `sarheight COMMAND --help` opens with.
        subparser = sub.add_parser(command.NAME, help=command.HELP, description=f"{command.HELP[:1].upper()}"
                                   f"{command.HELP[1:]}.", add_help=not passthrough)
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run, passthrough=passthrough)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.arguments = rest
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    created: list[Path] = []
    # Warnings as one line in the command's words while it runs (restored after: main()
    # may be called from Python).
    restored = warnings.catch_warnings()  # the filters and showwarning, as they were, after
    restored.__enter__()
    warnings.showwarning = functools.partial(_show_warning, parser=parser)
    # The project's warnings about the user's inputs are part of the command's output:
    # shown whatever filters the process was started with (PYTHONWARNINGS=error would turn
    # them into failures, =ignore hide what the README promises).
    for category in (VerticalDatumWarning, PlausibilityWarning, PartialCoverageWarning, PriorsOutsideWarning):
        warnings.filterwarnings("always" if category is VerticalDatumWarning else "default", category=category)
    status = 2
    # SIGTERM (timeout, SLURM, docker stop) unwinds the run as Ctrl-C does, so that its
    # temporary files go.
    terminate = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    try:
        check_installation()
        check_environment(os.environ)
        resolve_dem_argument(args)
        created = _prepare_outputs(args)
        announce_compiling(args)
        return int(args.run(args) or 0)
    except Terminated:
        message, status = "terminated", 128 + signal.SIGTERM
    except SarHeightError as exc:
        message = in_command_words(str(exc), parser)
    except MemoryError:
        message = ("out of memory: crop the DEM, use coarser radar pixels, or run block by block "
                   "(reconstruct --chunks 256)")
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    except BrokenPipeError:
        # The reader of the output went away (`sarheight configs | head`): nothing to say
        # to it; the rest of the output goes nowhere rather than raising at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if args.verbose:
            raise
        message, status = (f"unexpected {type(exc).__name__}: {exc} (run again with --verbose for the traceback, "
                           "and please report it)"), 1
    finally:
        close_stages()
        restored.__exit__(None, None, None)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, terminate)
    # The command as typed: `sarheight terrain refine`, not `sarheight terrain`.
    command = " ".join(str(word) for word in (args.command, getattr(args, "action", None)) if word)
    print(f"sarheight {command}: error: {message}", file=sys.stderr)
    # Folders made for the outputs of a command that wrote nothing go again.
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()
    return status


def check_installation() -> None:
    """Refuse, in one line, a ``sarheight`` package imported without its kernels: a source
    checkout's ``sarheight/`` found before any installed one (``python -m sarheight`` in
    the root of a checkout that was never installed), where only the install maps the
    top-level ``kernels/`` folder into ``sarheight.kernels``."""
    import importlib.util

    package = __name__.partition(".")[0]
    if importlib.util.find_spec(f"{package}.kernels") is None:
        found = Path(getattr(sys.modules[package], "__file__", None) or ".").parent
        raise SarHeightError(f"the {package} package imported from {found} has no kernels ({package}.kernels): a "
                             "source checkout imported without installing it (the install maps its kernels/ folder "
                             "there); install it (pip install -e . in the checkout, or make install), or run from "
                             "another folder with no such checkout on PYTHONPATH")


def check_environment(environment: Mapping[str, str]) -> None:
    """Refuse, in one line naming the variable, environment variables that would break
    Numba, PROJ or jsonargparse midway with a traceback or a wrong cause."""
    threads = environment.get("NUMBA_NUM_THREADS")
    if threads is not None and not (threads.strip().isdigit() and int(threads) >= 1):
        raise SarHeightError(f"NUMBA_NUM_THREADS={threads!r}: Numba takes a whole number of threads of 1 or more; "
                             "set one (e.g. 2), or unset it for all the cores")
    if environment.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        raise SarHeightError(f"NUMBA_DISABLE_JIT={environment['NUMBA_DISABLE_JIT']!r} would run the kernels as plain "
                             "Python, which they cannot (they use compiled intrinsics) and which would take hours; "
                             "unset it")
    layer = environment.get("NUMBA_THREADING_LAYER")
    if layer is not None and layer.strip().lower() not in NUMBA_THREADING_LAYERS:
        raise SarHeightError(f"NUMBA_THREADING_LAYER={layer!r}: Numba knows {', '.join(NUMBA_THREADING_LAYERS)}; set "
                             "one, or unset it for Numba's choice")
    for variable in ("PROJ_DATA", "PROJ_LIB"):
        if variable in environment and not environment[variable].strip():
            raise SarHeightError(f"{variable} is set but empty: PROJ would look for its data nowhere and read no CRS; "
                                 f"unset {variable} (pyproj brings its own) or point it at a PROJ data folder")
        folders = [folder for folder in environment.get(variable, "").split(os.pathsep) if folder]
        if folders and not any(os.path.isfile(os.path.join(folder, "proj.db")) for folder in folders):
            raise SarHeightError(f"{variable}={environment[variable]!r} holds no proj.db: PROJ could read no CRS; "
                                 f"unset {variable} (pyproj brings its own) or point it at a PROJ data folder")
    debug = environment.get("JSONARGPARSE_DEBUG")
    if debug is not None and debug.strip().lower() not in ("", "true", "false"):
        raise SarHeightError(f"JSONARGPARSE_DEBUG={debug!r}: jsonargparse reads true or false there; set one, or "
                             "unset it")
    check_dask_configuration(environment)


def check_dask_configuration(environment: Mapping[str, str]) -> None:
    """Refuse, naming the file, a dask configuration file that dask would fail to read
    when it is first imported (midway through a command, as a traceback): not YAML, or
    not a mapping at its top. The folders are dask's own (``dask.config.paths``, and
    ``DASK_CONFIG``), searched without importing dask."""
    import site

    import yaml

    folders = [environment.get("DASK_ROOT_CONFIG", "/etc/dask"), os.path.join(sys.prefix, "etc", "dask"),
               *(os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES),
               os.path.join(os.path.expanduser("~"), ".config", "dask"), environment.get("DASK_CONFIG", "")]
    for folder in dict.fromkeys(folder for folder in folders if folder):
        if os.path.isdir(folder):
            try:
                files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                               if os.path.splitext(name)[1].lower() in (".json", ".yaml", ".yml"))
            except OSError:
                continue  # dask skips a folder it cannot list
        elif os.path.isfile(folder):
            files = [folder]
        else:
            continue
        for path in files:
            try:
                with open(path, encoding="utf-8", errors="replace") as file:
                    text = file.read(1 << 20)
            except OSError:
                continue  # and a file it cannot read
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError as error:
                problem = " ".join(str(error).split())[:160]
                raise SarHeightError(f"the dask configuration file {path!r} is not valid YAML ({problem}): dask reads "
                                     "it when it starts and would stop the command midway; fix it, or move it "
                                     "away") from None
            if config is not None and not isinstance(config, dict):
                raise SarHeightError(f"the dask configuration file {path!r} holds a {type(config).__name__}, where "
                                     "dask reads a mapping (key: value) at the top; fix it, or move it away")


#: The commands whose work runs the Numba kernels.
KERNEL_COMMANDS = frozenset({"demo", "geocode", "simulate", "reconstruct", "benchmark", "terrain", "buildings"})


def announce_compiling(args: argparse.Namespace) -> None:
    """Say so, once, when a command starts compiling the kernels on an installation's first
    run (or after a kernel source changed): it is otherwise silent for minutes."""
    if args.command not in KERNEL_COMMANDS or getattr(args, "quiet", False):
        return
    from .. import kernels

    # Nothing compiled yet: a new installation, or every cache dropped after a kernel
    # source changed. (Later commands compile the few kernels the first did not use, in
    # seconds.)
    if kernels.compiled_share() > 0.05:
        return
    if kernels.CACHE_LOCATION == "":
        where = ("no folder to cache them in is writable, so they compile on every run: set NUMBA_CACHE_DIR to a "
                 "writable folder")
    else:
        folder = kernels.CACHE_LOCATION or str(Path(kernels.__file__).parent / "__pycache__")
        where = f"once: then cached in {folder}; `sarheight compile` does it ahead of time"
    message = (f"sarheight: compiling the numerical kernels (about three minutes on two idle cores, up to ten on a "
               f"busy machine; {where})")
    kernels.on_first_compile(lambda: print(message, file=sys.stderr, flush=True))


class Terminated(BaseException):
    """The command was asked to stop (SIGTERM); a BaseException, as KeyboardInterrupt is,
    so that nothing on the way mistakes it for an error to handle."""


def _terminated(signum, frame) -> None:
    raise Terminated


def _prepare_outputs(args: argparse.Namespace) -> list[Path]:
    """Check the output paths before any work and make their missing folders; returns the
    folders made, outermost first.

    A subcommand whose ``--out`` is a folder says so with ``out_is_folder``; the others'
    are files, as ``--quicklook`` always is, and with ``masks_file`` the run also writes
    ``OUT_masks.tif``. The files of a run must differ from each other and from every input
    the command names, and must not be symbolic links (writing would replace a link by a
    plain file).
    """
    paths = [(getattr(args, "out", None), getattr(args, "out_is_folder", False), "--out"),
             (getattr(args, "quicklook", None), False, "--quicklook")]
    if getattr(args, "masks_file", False) and getattr(args, "out", None):
        paths.append((str(masks_path(Path(args.out))), False, "--out's masks file"))
    for name in getattr(args, "companion_files", ()) if getattr(args, "out", None) else ():
        paths.append((str(companion_path(Path(args.out), name)), False, f"--out's {name} file"))
    # The files written beside --out replace files of a run to the same --out; one found
    # there without --out (a file of the user's that happens to bear the name) is kept.
    beside = [Path(given) for given, _, option in paths[2:] if given]
    if getattr(args, "out", None) and not getattr(args, "out_is_folder", False) and not Path(args.out).exists():
        found = [str(path) for path in beside if path.exists()]
        if found:
            raise SarHeightError(f"--out {args.out!r} would also write {', '.join(found)}, which exist(s) from "
                                 f"elsewhere (no {Path(args.out).name} beside): move them, or give another --out")
    missing: list[Path] = []
    for given, is_folder, option in paths:
        if given is not None and not str(given).strip():
            raise SarHeightError(f"{option} is empty: give the path of the file to write")
        if not given:
            continue
        path = Path(given)
        if is_folder and path.exists() and not path.is_dir():
            raise SarHeightError(f"--out {given!r} is a file: the {args.command} command writes into a folder, "
                                 "give a folder's path")
        if not is_folder and path.is_dir():
            raise SarHeightError(f"{given!r} is a folder: give the path of the file to write")
        folder = path if is_folder else path.parent
        ancestor = folder
        while not ancestor.exists():
            missing.append(ancestor)
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise SarHeightError(f"cannot write {given!r}: {str(ancestor)!r} is a file, not a folder")
    # An option given several times (--sar, --ckpt) names several inputs, a folder of
    # inputs (a city, So2Sat, scenes) the files read from it.
    inputs = [(value, label) for name, label in INPUT_OPTIONS.items()
              for value in (lambda given: given if isinstance(given, list) else [given])(getattr(args, name, None))]
    for name, patterns in INPUT_FOLDERS.items():
        given = getattr(args, name, None)
        for folder in (given if isinstance(given, list) else [given]):
            if isinstance(folder, str) and Path(folder).is_dir():
                inputs.append((folder, f"--{name.replace('_', '-')}"))
                inputs += [(str(path), f"a file of --{name.replace('_', '-')} {folder}")
                           for pattern in patterns for path in Path(folder).glob(pattern)]
    check_outputs([(given, option) for given, is_folder, option in paths if given and not is_folder], inputs)
    created = []
    for folder in sorted(set(missing), key=lambda p: len(p.parts)):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as error:
                raise SarHeightError(f"cannot make the folder {str(folder)!r} ({error.strerror}): choose another "
                                     "place") from None
            created.append(folder)
    try:
        for given, is_folder, option in paths:
            if given:
                check_writable_folder(Path(given) / "probe" if is_folder else given, option)
    except SarHeightError:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return created


def _show_warning(message, category, filename, lineno, file=None, line=None, *, parser) -> None:
    """Warnings as one line of the command's output, in its words, without the source line."""
    print(f"sarheight: warning: {in_command_words(str(message), parser)}", file=file or sys.stderr)

