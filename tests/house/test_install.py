"""The install: a light physics core without the ml extra, every package listed, the extra named when missing."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def test_the_physics_imports_nothing_of_the_ml_extra():
    """Geocoding, simulation, reconstruction, the command line and the demo import no torch,
    Lightning, torchmetrics, jsonargparse or h5py: a plain ``pip install`` runs them."""
    done = _run("""
        import sys
        import sarheight.cli, sarheight.demo, sarheight.distributed, sarheight.geometry
        import sarheight.city, sarheight.layover, sarheight.observation, sarheight.reallocation, sarheight.simulate
        from sarheight.cli import build_parser
        build_parser()
        from sarheight.extras import ML_MODULES
        print(sorted(name for name in ML_MODULES if name in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_a_model_package_without_the_extra_names_it():
    """With PyTorch absent (its import fails), importing the models says which extra to install."""
    done = _run("""
        import sys
        sys.modules["torch"] = None  # an import of torch now fails, as where it is not installed
        try:
            import sarheight.models
        except ImportError as error:
            print(type(error).__name__, error)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingExtraError sarheight.models needs torch"), done.stdout
    assert "pip install 'sarheight[ml]'" in done.stdout


def test_every_package_is_in_the_distribution():
    """Each folder of the package with an ``__init__.py`` is listed in pyproject.toml, so
    that a (non-editable) install carries it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"sarheight." + ".".join(path.parent.relative_to(ROOT / "sarheight").parts)
             for path in (ROOT / "sarheight").rglob("__init__.py") if path.parent != ROOT / "sarheight"}
    found = {name.rstrip(".") for name in found} | {"sarheight"}
    found.discard("sarheight.kernels")  # a link to kernels/ in some checkouts, never a folder of its own
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
    assert config["package-dir"]["sarheight.kernels"] == "kernels"


def test_the_learning_stack_is_an_extra_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {re.split(r"[<>=!~\[ ]", spec)[0] for spec in project["dependencies"]}
    extra = {re.split(r"[<>=!~\[ ]", spec)[0] for spec in project["optional-dependencies"]["ml"]}
    assert {"torch", "lightning", "torchmetrics", "jsonargparse", "h5py"} <= extra
    assert not required & extra, f"in the plain install: {sorted(required & extra)}"


def test_the_user_entries_are_at_the_top_and_cost_nothing_to_import():
    """``from sarheight import reconstruct`` and the other entries resolve to their homes;
    importing the package loads neither Numba nor torch (the command line starts at once,
    and the physics runs without the ml extra)."""
    code = ("import sys, sarheight; loaded = [m for m in ('numba', 'torch') if m in sys.modules]; "
            "entries = {name: getattr(sarheight, name).__module__ for name in sarheight.ENTRIES "
            "if not sarheight.ENTRIES[name].startswith('training')}; print(loaded, len(entries))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("]")[0] == "[", done.stdout
    import sarheight

    assert sarheight.reconstruct.__module__ == "sarheight.reconstruction"
    assert sarheight.refine_dem.__module__ == "sarheight.refinement"
    assert set(sarheight.ENTRIES) <= set(dir(sarheight)) and set(sarheight.ENTRIES) <= set(sarheight.__all__)
    with pytest.raises(AttributeError, match="no attribute"):
        sarheight.nonsense  # noqa: B018
