"""Output paths checked before any work: folders that exist and can be written, files that
are neither an input nor another output of the same run.

Light on purpose (the standard library only): the command line checks its outputs with
it before it imports anything heavy.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import InvalidInputError

#: The installed package's folder: no output is written among its files.
PACKAGE_FOLDER = os.path.realpath(Path(__file__).resolve().parent)


def _own_folders() -> tuple[str, ...]:
    """The package's folder and its kernels' (which a checkout keeps beside it, and an
    installation inside it)."""
    import importlib.util

    folders = [PACKAGE_FOLDER]
    try:
        spec = importlib.util.find_spec("sarheight.kernels")
        folders += [os.path.realpath(place) for place in (spec.submodule_search_locations or [])] if spec else []
    except (ImportError, ValueError):
        pass
    return tuple(dict.fromkeys(folders))


#: The folders no output is written into: sarheight's own files and its kernels'.
OWN_FOLDERS = _own_folders()


def inside_own_folders(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies in sarheight's own folders (:data:`OWN_FOLDERS`)."""
    key = os.path.realpath(path)
    return any(os.path.commonpath([key, folder]) == folder for folder in OWN_FOLDERS)


#: Files no output replaces, wherever they lie: code.
PROGRAM_SUFFIXES = (".py", ".pyc", ".pyx", ".so", ".pyd", ".sh")


def check_writable_folder(path: str | os.PathLike[str], what: str) -> Path:
    """The folder of the output file ``path``, after checking before any work that it exists
    and a file can be written there; ``what`` names the output in messages."""
    target = Path(path)
    if not os.fspath(path).strip():
        raise InvalidInputError(f"{what}: the path is empty; give the path of the file to write")
    if target.is_dir():
        raise InvalidInputError(f"{what} {os.fspath(path)!r} is a folder: give the path of the file to write")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInputError(f"output folder {str(folder)!r} does not exist: create it first")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".sarheight-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InvalidInputError(
            f"{what} {os.fspath(path)!r} cannot be written: the folder {str(folder)!r} is not writable "
            f"({error.strerror}); choose another place"
        ) from None
    return folder


def check_outputs(outputs: Sequence[tuple[str | os.PathLike[str], str]],
                  inputs: Sequence[tuple[object, str]] = ()) -> None:
    """Refuse outputs (path, name in messages) that are symbolic links or existing files
    that are not plain (a device, a FIFO: writing would replace either by a plain file), that name one file twice, that
    name a file among ``inputs``
    (anything given as an input, with its name; only paths count) or lie inside a folder
    among them (a SAFE product, a city: writing would change the input), or that would
    replace code (sarheight's own files, or any file of a program suffix)."""
    seen: dict[str, str] = {}
    for path, name in outputs:
        if os.path.islink(path):
            raise InvalidInputError(
                f"{name} {os.fspath(path)!r} is a symbolic link, which writing would replace by a plain file: give "
                f"the path it points to ({os.path.realpath(path)!r}) or another one"
            )
        if os.path.exists(path) and not os.path.isdir(path) and not stat.S_ISREG(os.stat(path).st_mode):
            raise InvalidInputError(
                f"{name} {os.fspath(path)!r} is not a plain file (a device, a FIFO or a socket), which writing would "
                "replace by one: give the path of a file"
            )
        key = os.path.realpath(path)
        if key in seen:
            raise InvalidInputError(f"{name} and {seen[key]} name the same file {os.fspath(path)!r}: give each its "
                                    "own path")
        seen[key] = name
    for source, label in inputs:
        if not (isinstance(source, (str, os.PathLike)) and os.fspath(source)):
            continue
        if os.path.realpath(source) in seen:
            raise InvalidInputError(f"{seen[os.path.realpath(source)]} {os.fspath(source)!r} is {label}, an input of "
                                    "this run: writing would replace it; give another path")
        if os.path.isdir(source):
            # A folder given as an input (a SAFE product, a city, scenes) is read whole:
            # a file written into it changes the input, now or for the next run.
            folder = os.path.realpath(source)
            for key, name in seen.items():
                if os.path.commonpath([key, folder]) == folder:
                    raise InvalidInputError(f"{name} lies inside {label} {os.fspath(source)!r}, an input of this run: "
                                            "writing there would change it; write outside it")
    for key, name in seen.items():
        if inside_own_folders(key) or Path(key).suffix in PROGRAM_SUFFIXES:
            raise InvalidInputError(f"{name} {key!r} is a program file (or lies among sarheight's own): writing would "
                                    "replace code; give another path")
