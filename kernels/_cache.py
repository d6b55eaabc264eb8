"""Where Numba caches the kernels, and keeping those caches consistent with all their sources.

Location (:func:`choose_cache_location`, before any kernel is defined). ``NUMBA_CACHE_DIR``
when the user sets it; else beside the sources (``kernels/__pycache__``) when that folder
is writable, as in a development checkout or a user's own environment; else
``$XDG_CACHE_HOME/sarheight/numba`` (``~/.cache/sarheight/numba``), so that a read-only
install (a shared environment, a container image) compiles once per user and then
starts at once; else a private folder in the temporary directory. A folder is taken only
if a file can really be written there (read-only mounts count, whoever the user) and, in
the shared temporary directory, only if it is the user's own and writable by nobody
else: Numba loads compiled code from its cache. Where nothing is writable the kernels
compile in memory on each run, and importing never fails on the cache.

Consistency. Numba keys a cached function on the source file that defines it and nothing
else. The kernels call each other across modules and Numba compiles the callees into
the caller, so after a change to ``projection.py`` alone, a cached
``facets.facet_pass`` would still run the old projection code, silently, until
``facets.py`` changes too. That happens in an editable install after ``git pull`` or a
branch switch. Here the caches of all kernels are dropped whenever the fingerprint of
the kernel sources differs from the one recorded next to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

import numba
from numba.core.dispatcher import Dispatcher

MARKER = "kernel-sources.sha256"


def choose_cache_location(directory: Path) -> str | None:
    """Decide where Numba caches the kernels of ``directory`` (see the module docstring)
    and tell Numba (``numba.config.CACHE_DIR``) where it is not its default.

    Returns the folder, None for Numba's default beside the sources, or "" where no
    folder is writable (the kernels are then compiled without caching:
    :func:`caching_disabled`).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]  # Numba reads it itself
    if _writable(directory / "__pycache__"):
        return None
    for candidate, private in _user_cache_folders():
        if _writable(candidate, private=private):
            numba.config.CACHE_DIR = str(candidate)
            return str(candidate)
    return ""


def _user_cache_folders() -> list[tuple[Path, bool]]:
    """(folder, whether it must be private) candidates for a read-only install."""
    folders = []
    base = os.environ.get("XDG_CACHE_HOME")
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory
        base = base or str(Path.home() / ".cache")
    if base:
        folders.append((Path(base) / "sarheight" / "numba", False))
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    folders.append((Path(tempfile.gettempdir()) / f"sarheight-numba-{user}", True))
    return folders


def _writable(folder: Path, private: bool = False) -> bool:
    """Whether a file can be written in ``folder`` (made if missing); with ``private``, also
    whether it is the user's own and writable by nobody else."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
        if private and hasattr(os, "getuid"):
            info = folder.stat()
            if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return False
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Kernels defined inside compile without caching (``cache=True`` is dropped): where no
    folder is writable, Numba would otherwise refuse to define them at all."""
    original = numba.njit

    def njit(*args, **options):
        options["cache"] = False
        return original(*args, **options)

    numba.njit = njit
    try:
        yield
    finally:
        numba.njit = original


def sources_fingerprint(directory: Path) -> str:
    """SHA-256 over the names and contents of the ``*.py`` files of ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_dispatchers(modules: Iterable[ModuleType]) -> list[Dispatcher]:
    """The ``cache=True`` Numba functions defined in ``modules``."""
    found = []
    for module in modules:
        for value in vars(module).values():
            if (isinstance(value, Dispatcher) and value.__module__ == module.__name__
                    and getattr(getattr(value, "_cache", None), "cache_path", None) is not None):
                found.append(value)
    return found


def cached_share(modules: Iterable[ModuleType]) -> float:
    """The share of the ``cache=True`` functions of ``modules`` that have a cached
    compilation (1.0 where there are none to cache); 0.0 where Numba's cache objects
    cannot tell."""
    dispatchers = cached_dispatchers(modules)
    if not dispatchers:
        return 1.0
    try:
        # An index file alone is no compilation (dropping a cache leaves an empty one):
        # count the functions with a compiled entry (NAME-LINE.pyXY.N.nbc) beside it.
        indexes = [Path(d._cache._cache_file._index_path) for d in dispatchers]
        listed = {folder: {path.name for path in folder.glob("*.nbc")} if folder.is_dir() else set()
                  for folder in {index.parent for index in indexes}}
        found = sum(any(name.startswith(index.name[:-len("nbi")]) for name in listed[index.parent])
                    for index in indexes)
    except Exception:  # a Numba whose cache objects differ
        return 0.0
    return found / len(dispatchers)


def refresh_stale_caches(directory: Path, modules: Iterable[ModuleType]) -> bool:
    """Drop the cached compilations of the functions of ``modules`` (kernels in
    ``directory``) if the kernel sources changed since the caches were written.

    Returns whether the caches were dropped. Best effort, never an error: where the
    kernels are not cached there is nothing to drop, and a Numba whose cache objects
    differ leaves the caches as they are.
    """
    try:
        return _refresh(directory, modules)
    except Exception:  # a cache refresh must never fail an import
        return False


def _refresh(directory: Path, modules: Iterable[ModuleType]) -> bool:
    dispatchers = cached_dispatchers(modules)
    if not dispatchers:
        return False
    fingerprint = sources_fingerprint(directory)
    locations = {Path(d._cache.cache_path) for d in dispatchers}
    stale = False
    for location in locations:
        try:
            stale |= (location / MARKER).read_text().strip() != fingerprint
        except OSError:
            stale = True
    if not stale:
        return False
    try:
        for dispatcher in dispatchers:
            dispatcher._cache.flush()
        for location in locations:
            location.mkdir(parents=True, exist_ok=True)
            # Written once the stale entries are gone, atomically: a process that reads a
            # current marker finds current caches.
            handle, temporary = tempfile.mkstemp(dir=location, prefix=".marker-")
            with os.fdopen(handle, "w") as stream:
                stream.write(fingerprint + "\n")
            os.chmod(temporary, 0o644)  # readable by the other users of a shared cache
            os.replace(temporary, location / MARKER)
    except OSError:
        return False
    return True
