"""Cached kernels follow changes to any kernel source, not only their own module's."""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from sarheight.kernels import _cache, facets, projection

PACKAGE_INIT = """
from pathlib import Path

from . import callee, caller
from sarheight.kernels._cache import refresh_stale_caches

refresh_stale_caches(Path(__file__).parent, (callee, caller))
"""

CALLER = """
import numba

from .callee import value


@numba.njit(cache=True)
def twice():
    return 2.0 * value()
"""


def _callee(result: float) -> str:
    return f"import numba\n\n\n@numba.njit(cache=True)\ndef value():\n    return {result!r}\n"


def _run(root: Path, cache: Path) -> float:
    # No bytecode: a rewrite within the same second and of the same size would reuse a stale .pyc.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", "import stalepkg.caller as c; print(c.twice())"],
                          capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def test_a_change_to_a_callee_module_recompiles_its_cached_callers(tmp_path):
    # Numba compiles `value` into `twice` and keys twice's cache on caller.py alone:
    # without the refresh, the second run would print the stale 2.0.
    package = tmp_path / "src" / "stalepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE_INIT))
    (package / "caller.py").write_text(textwrap.dedent(CALLER))
    (package / "callee.py").write_text(_callee(1.0))
    cache = tmp_path / "cache"
    assert _run(tmp_path / "src", cache) == 2.0
    assert _run(tmp_path / "src", cache) == 2.0  # from the cache
    (package / "callee.py").write_text(_callee(5.0))
    assert _run(tmp_path / "src", cache) == 10.0


def test_the_fingerprint_covers_every_kernel_source(tmp_path):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    before = _cache.sources_fingerprint(tmp_path)
    (tmp_path / "b.py").write_text("x = 2\n")
    assert _cache.sources_fingerprint(tmp_path) != before


def test_the_kernels_record_the_fingerprint_of_their_sources():
    directory = Path(facets.__file__).parent
    dispatchers = _cache.cached_dispatchers([facets, projection])
    assert facets.facet_pass in dispatchers and projection.scatter_edge in dispatchers
    location = Path(facets.facet_pass._cache.cache_path)
    marker = location / _cache.MARKER
    if not marker.exists():
        pytest.skip(f"the kernels' cache location {location} is not writable: Numba does not cache there")
    assert marker.read_text().strip() == _cache.sources_fingerprint(directory)
    # Up to date: nothing is dropped on the next import.
    assert not _cache.refresh_stale_caches(directory, [facets, projection])


# --- where the kernels are cached ------------------------------------------------------


def _unwritable(tmp_path: Path, name: str) -> Path:
    """A folder that cannot be made, whoever the user: its parent is a regular file."""
    blocker = tmp_path / f"{name}-is-a-file"
    blocker.write_text("")
    return blocker / name


def test_cache_location_beside_the_sources_when_writable(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _cache.choose_cache_location(tmp_path / "kernels") is None


def test_cache_location_of_a_read_only_install(tmp_path, monkeypatch):
    """The sources' folder not writable: the user's cache folder, else a private folder in
    the temporary directory, else nothing (compiled in memory), never an error."""
    import numba

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)  # restored afterwards
    read_only = _unwritable(tmp_path, "kernels")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _cache.choose_cache_location(read_only) == str(tmp_path / "cache" / "sarheight" / "numba")
    assert numba.config.CACHE_DIR == str(tmp_path / "cache" / "sarheight" / "numba")
    monkeypatch.setenv("XDG_CACHE_HOME", str(_unwritable(tmp_path, "cache")))
    monkeypatch.setattr(_cache.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    private = _cache.choose_cache_location(read_only)
    assert private.startswith(str(tmp_path / "tmp" / "sarheight-numba-"))
    assert os.stat(private).st_mode & 0o077 == 0  # the user's alone: Numba loads code from it
    os.chmod(private, 0o777)  # another user could have planted files there: not taken
    assert _cache.choose_cache_location(read_only) == ""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "chosen"))
    assert _cache.choose_cache_location(read_only) == str(tmp_path / "chosen")


def test_kernels_defined_with_caching_disabled_compile_in_memory():
    import numba

    with _cache.caching_disabled():
        @numba.njit(cache=True)
        def plus_one(x):
            return x + 1

    assert plus_one(1) == 2
    assert type(plus_one._cache).__name__ == "NullCache"  # nothing written anywhere


def _read_only_run(site: Path, home: Path, read_only_home: bool) -> str:
    """Import the package copy in ``site`` from a read-only mount of it (a private mount
    namespace), with ``home`` as HOME, and compute one kernel; returns what it printed."""
    script = ("import numpy as np; import sarheight.kernels as k; "
              "k.geodetic_to_ecef(np.zeros(2), np.zeros(2), np.zeros(2), k.WGS84_A, k.WGS84_E2); "
              "d = k.geodetic_to_ecef; "
              "print(k.CACHE_LOCATION, sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values()))")
    mount = site.parent / "mount"
    mount.mkdir(exist_ok=True)
    commands = [f"mount --bind {site} {mount}", f"mount -o remount,bind,ro {mount}"]
    if read_only_home:
        commands += [f"mount --bind {home} {home}", f"mount -o remount,bind,ro {home}"]
    env = {key: value for key, value in os.environ.items() if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(mount), PYTHONDONTWRITEBYTECODE="1")
    commands.append(f"cd {home} && {sys.executable} -c '{script}'")
    done = subprocess.run(["unshare", "-m", "sh", "-c", " && ".join(commands)], capture_output=True, text=True,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_read_only_install_imports_runs_and_caches_per_user(tmp_path):
    """The package on a read-only file system (as in a container image): it imports and
    runs with a read-only home too, and with a writable home compiles once, then loads
    the kernels from the user's cache."""
    import shutil

    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False) if shutil.which(
        "unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("a read-only mount needs unshare -m (a private mount namespace), not permitted here")
    root = Path(__file__).resolve().parents[2]
    site = tmp_path / "site"
    shutil.copytree(root / "sarheight", site / "sarheight", ignore=shutil.ignore_patterns("__pycache__", "kernels"))
    shutil.copytree(root / "kernels", site / "sarheight" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    read_only_home, home = tmp_path / "read-only-home", tmp_path / "home"
    read_only_home.mkdir()
    home.mkdir()
    location, _, misses = _read_only_run(site, read_only_home, read_only_home=True).split()
    assert location.startswith(tempfile.gettempdir()) and int(misses) == 1
    first = _read_only_run(site, home, read_only_home=False).split()
    second = _read_only_run(site, home, read_only_home=False).split()
    assert first[0] == second[0] == str(home / ".cache" / "sarheight" / "numba")
    assert (first[1], first[2]) == ("0", "1") and (second[1], second[2]) == ("1", "0")
    assert not list(site.rglob("__pycache__"))
