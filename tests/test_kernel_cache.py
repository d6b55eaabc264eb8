"""Cached kernels follow changes to any kernel source, not only their own module's."""

import os
import subprocess
import sys
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
