"""Keep Numba's on-disk caches of the kernels consistent with all of their sources.

Numba keys a cached function on the source file that defines it and nothing else. The
kernels call each other across modules and Numba compiles the callees into the caller,
so after a change to ``projection.py`` alone, a cached ``facets.facet_pass`` would
still run the old projection code, silently, until ``facets.py`` changes too. That
happens in an editable install after ``git pull`` or a branch switch. Here the caches
of all kernels are dropped whenever the fingerprint of the kernel sources differs from
the one recorded next to them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from numba.core.dispatcher import Dispatcher

MARKER = "kernel-sources.sha256"


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


def refresh_stale_caches(directory: Path, modules: Iterable[ModuleType]) -> bool:
    """Drop the cached compilations of the functions of ``modules`` (kernels in
    ``directory``) if the kernel sources changed since the caches were written.

    Returns whether the caches were dropped. Best effort, never an error: where the
    cache location is not writable Numba does not cache either, and a Numba whose cache
    objects differ leaves the caches as they are.
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
