"""The house: imports point one way (the order of docs/architecture.md), no private name
crosses a module, the kernels import nothing of ours, no test imports another test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The layers of the package, lowest first (docs/architecture.md): a module imports only
#: from lower layers, or from its own layer's package (a subpackage's own modules). A
#: package whose modules sit on different floors (terrain) names each module.
LAYERS = (
    ("kernels",),
    ("_version", "threads", "errors", "extras", "masks"),
    ("compute",),
    ("paths", "configs", "geoids"),
    ("io",),
    ("raster", "scores"),
    ("dem",),
    ("ground", "coarse_dem"),
    ("preprocess",),
    ("geometry",),
    ("simulate",),
    ("observation",),
    ("reallocation",),
    ("distributed",),
    ("reconstruction",),
    ("layover",),
    ("plots", "sample_data"),
    ("priors",),
    ("terrain.method_table", "terrain.inversion_settings", "terrain.classes"),
    ("terrain.scene_options",),
    ("terrain.backprojection",),
    ("terrain.geometry", "terrain.grid", "terrain.files"),
    ("terrain.radar_images", "terrain.relief", "terrain.land_cover"),
    ("terrain.forward",),
    ("terrain.gauss_newton",),
    ("terrain.registration", "terrain.inversion"),
    ("terrain.variables",),
    ("terrain.observed",),
    ("terrain.augment",),
    ("terrain.simulated",),
    ("terrain.scene_sets",),
    ("terrain.scene_draws",),
    ("terrain.clinometry",),
    ("terrain.methods",),
    ("terrain",),
    ("city",),
    ("models",),
    ("data",),
    ("training",),
    ("refinement",),
    ("studies",),
    ("demo",),
    ("cli",),
    ("__main__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    """Dotted names (below ``sarheight``) of the package's modules, kernels included."""
    modules = {}
    for folder, prefix in ((ROOT / "sarheight", ()), (ROOT / "kernels", ("kernels",))):
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder)
            if not prefix and relative.parts[0] == "kernels":
                continue  # a link to kernels/ in some checkouts: read from kernels/ itself
            parts = prefix + relative.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(imported module below ``sarheight``, imported name or "") of every import of ours."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.split(".")[0] == "sarheight":
                target = node.module.removeprefix("sarheight").lstrip(".")
            else:
                continue
            found += [(target, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name.removeprefix("sarheight").lstrip("."), "") for alias in node.names
                      if alias.name.split(".")[0] == "sarheight"]
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    """The key of ``module``'s layer: its longest dotted prefix that :data:`LAYERS` names."""
    parts = module.split(".") if module else [""]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in RANK:
            return ".".join(parts[:end])
    return parts[0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    if not name:
        return  # the package's __init__ re-exports the errors and the version
    rank = RANK.get(_layer(name))
    assert rank is not None, f"sarheight.{name} is in no layer of docs/architecture.md: place it there and here"
    for target, imported in _imports(name, MODULES[name]):
        full = f"{target}.{imported}" if target else imported
        module = full if full in MODULES else target
        if _layer(module) == _layer(name):
            continue  # within one package of the house
        assert RANK[_layer(module)] < rank, f"sarheight.{name} imports sarheight.{module}, which is above it"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_a_module(name):
    for target, imported in _imports(name, MODULES[name]):
        full = f"{target}.{imported}" if target else imported
        if full in MODULES or not imported.startswith("_") or imported.startswith("__"):
            continue  # a module, a public name, or a dunder (__version__)
        assert target == name, f"sarheight.{name} imports the private {imported} of sarheight.{target}"


def test_kernels_import_nothing_of_ours():
    for name, path in MODULES.items():
        if _layer(name) == "kernels":
            assert all(_layer(target) == "kernels" for target, _ in _imports(name, path)), name


#: The modules outside the kernel door (``sarheight.compute``) that import ``kernels``:
#: ``cli`` and ``demo`` read the numba backend's compilation cache, not a pass. Every pass
#: goes through the door.
CACHE_READERS = {"cli", "demo"}


def _imports_a_kernel(name: str) -> bool:
    for target, imported in _imports(name, MODULES[name]):
        full = f"{target}.{imported}" if target else imported
        if _layer(full if full in MODULES else target) == "kernels":
            return True
    return False


def test_kernels_are_reached_through_the_door():
    """Outside ``kernels/``, only the kernel door and the compilation cache's readers
    import a kernel, and each of those readers still does."""
    callers = {name for name in MODULES if _layer(name) != "kernels" and _imports_a_kernel(name)}
    door = {name for name in callers if _layer(name) == "compute"}
    assert door, "the kernel door (sarheight.compute) imports no kernel"
    assert callers - door <= CACHE_READERS, \
        f"{sorted(callers - door - CACHE_READERS)} import kernels: reach them through sarheight.compute"
    assert CACHE_READERS <= callers, f"{sorted(CACHE_READERS - callers)} no longer read the kernels' cache"


#: The kernels behind the door, and the door's pass that calls each.
DOOR_PASSES = {"geocode_grid(": "compute.geocode", "cells.cell_geometry(": "compute.cell_geometry",
               "geodetic_to_ecef": "compute.ecef"}


@pytest.mark.parametrize("kernel", sorted(DOOR_PASSES))
def test_the_passes_behind_the_door_are_reached_through_it(kernel):
    """No module but the door calls the kernel of a pass behind it."""
    for name, path in MODULES.items():
        if _layer(name) not in ("kernels", "compute"):
            assert kernel not in path.read_text(), f"sarheight.{name} calls {kernel[:-1]}: use {DOOR_PASSES[kernel]}"


def test_no_test_imports_another_test_module():
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            assert not any(n.split(".")[-1].startswith("test_") for n in names if n.startswith("tests")), \
                f"{path.name} imports a test module: move what it shares into tests/support/"


#: The floors of the package the test folders mirror (and the house as a whole).
TEST_FOLDERS = {"kernels", "core", "physics", "preprocess", "terrain", "learning", "studies", "cli", "house", "support"}


def test_tests_live_in_the_folders_of_the_floors():
    loose = sorted(path.name for path in (ROOT / "tests").glob("test_*.py"))
    assert not loose, f"tests outside the floors' folders: {loose}; move them into one of {sorted(TEST_FOLDERS)}"
    folders = {path.name for path in (ROOT / "tests").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders <= TEST_FOLDERS, f"test folders {sorted(folders - TEST_FOLDERS)} mirror no floor: name them here"


def test_the_slow_files_run_first_are_test_files():
    from tests.conftest import SLOW_FILES

    missing = [name for name in SLOW_FILES if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py's SLOW_FILES names files that are not there: {missing}"


def test_no_benchmark_imports_tests_or_private_names():
    for path in (ROOT / "benchmarks").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "tests", f"benchmarks/{path.name} imports tests: use twins/"
                if node.module.split(".")[0] == "sarheight":
                    private = [alias.name for alias in node.names if alias.name.startswith("_")
                               and not alias.name.startswith("__")]
                    assert not private, f"benchmarks/{path.name} imports private names {private} of {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "tests" for alias in node.names), path.name


#: The homes of the raster core's concepts (docs/architecture.md): the derivative of a
#: raster, the metres of a degree, the RMSE, the robust spread and the cells' centres. The benchmark's scenes are
#: exempt: they
#: run in a worker beside another version's package and import nothing of sarheight.
CORE_HOMES = {"gradient": "raster", "metres per degree": "raster", "RMSE": "scores", "scaled MAD": "raster",
              "cell centres": "raster"}
SELF_CONTAINED = {"cli.benchmark.scenes"}
_METRES_PER_DEGREE = re.compile(r"\b111_?3\d\d(?:\.\d*)?\b|\b6_?371_?000\b")
_HAND_RMSE = re.compile(r"sqrt\(\s*(?:float\(\s*)?(?:np|numpy)\.(?:nan)?mean\(")
_SCALED_MAD = re.compile(r"\b1\.4826\b")
_HAND_CENTRES = re.compile(r"\.[cf] \+ \w+\.[ae] \* \(np\.arange\(")


def _gradient_calls(path: Path) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "gradient"
            and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy")]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_raster_core_is_the_one_home_of_its_concepts(name):
    if name in SELF_CONTAINED or _layer(name) == "kernels":
        return
    path = MODULES[name]
    text = path.read_text()
    if name != CORE_HOMES["gradient"]:
        assert not _gradient_calls(path), (f"sarheight.{name} calls np.gradient (lines {_gradient_calls(path)}): "
                                           "use sarheight.raster.gradient, the one derivative of a raster")
    if name != CORE_HOMES["metres per degree"]:
        found = _METRES_PER_DEGREE.findall(text)
        assert not found, (f"sarheight.{name} holds a metres-per-degree constant {found}: use "
                           "sarheight.raster.metres_per_degree or cell_steps_m (WGS84, the one conversion)")
    if name != CORE_HOMES["RMSE"]:
        found = _HAND_RMSE.findall(text)
        assert not found, f"sarheight.{name} computes an RMSE by hand: use sarheight.scores (rms, MapScores)"
    if name != CORE_HOMES["scaled MAD"]:
        found = _SCALED_MAD.findall(text)
        assert not found, (f"sarheight.{name} scales a median absolute deviation by hand: "
                           "use sarheight.raster.robust_spread")
    if name != CORE_HOMES["cell centres"]:
        found = _HAND_CENTRES.findall(text)
        assert not found, f"sarheight.{name} places cell centres by hand: use sarheight.raster.cell_centres"


def _entries() -> dict[str, object]:
    """The user entries: sarheight's top-level ones and terrain's."""
    import importlib

    import sarheight
    import sarheight.terrain

    found = {}
    for package in (sarheight, sarheight.terrain):
        for name, module in package.ENTRIES.items():
            if module.startswith("training"):
                continue  # the ml extra; its entries take checkpoints and scenes, no DEM
            found[f"{package.__name__}.{name}"] = getattr(importlib.import_module(f"{package.__name__}.{module}"), name)
    return found


#: The names a DEM, an observation and a geometry go by in the entries' signatures.
DEM_PARAMETERS = ("dem", "coarse_dem")
OBSERVATION_PARAMETERS = ("sar",)
GEOMETRY_PARAMETERS = ("geometry",)


def test_one_interface_convention_at_the_surface():
    """docs/architecture.md's convention: the DEM first, then the observation(s), then the
    geometry; ``progress`` a bool."""
    import inspect

    for name, entry in _entries().items():
        if not callable(entry) or isinstance(entry, type):
            continue
        parameters = list(inspect.signature(entry).parameters)
        positions = [next((parameters.index(p) for p in names if p in parameters), None)
                     for names in (DEM_PARAMETERS, OBSERVATION_PARAMETERS, GEOMETRY_PARAMETERS)]
        given = [position for position in positions if position is not None]
        assert given == sorted(given), \
            f"{name}{inspect.signature(entry)}: the DEM first, then the observation, then the geometry"
        if positions[0] is not None:
            assert positions[0] == 0, f"{name}: the DEM is the first argument"
        progress = inspect.signature(entry).parameters.get("progress")
        if progress is not None:
            assert progress.annotation in ("bool", bool), \
                f"{name}: progress is a bool at the surface, not {progress.annotation}"


#: Every function that makes priors, each taking them as one ``priors`` specification.
PRIOR_TAKERS = ("sarheight.priors.sample_priors", "sarheight.terrain.simulated.simulate_scene",
                "sarheight.terrain.scene_sets.SceneAxes", "sarheight.terrain.observed.observed_scene",
                "sarheight.refinement.refine_dem")


@pytest.mark.parametrize("dotted", PRIOR_TAKERS)
def test_known_heights_are_one_specification(dotted):
    """docs/architecture.md's convention: known heights are a ``PriorSpec`` given as
    ``priors``; no function spells a part of it as a keyword of its own (``points_crs=``,
    ``prior_fraction=``, ``prior_kinds=``). ``prior_method`` is the baseline's, not the
    priors'."""
    import importlib
    import inspect

    module, _, name = dotted.rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    assert "priors" in parameters, f"{dotted} takes the known heights as priors="
    spelled = [p for p in parameters if (p.startswith(("prior_", "points_")) and p != "prior_method")]
    assert not spelled, f"{dotted}: {spelled} are parts of a PriorSpec; take them in priors="


#: The parts of the option groups of a user's refinement (``SarReading``, ``SceneProducts``,
#: ``Execution``), which its entries take as groups.
GROUPED_PARTS = {"measurement": "reading", "sar_quantity": "reading", "sar_db": "reading", "projection": "reading",
                 "register": "products", "inversion": "products", "keep_dates": "products",
                 "inversion_blocks": "execution", "client": "execution", "tile": "execution", "overlap": "execution",
                 "device": "execution", "progress": "execution"}


@pytest.mark.parametrize("dotted", ("sarheight.terrain.observed.observed_scene", "sarheight.refinement.refine_dem"))
def test_a_refinements_options_come_in_groups(dotted):
    """docs/architecture.md's convention: how the observations are read, what a scene makes
    and where the work runs are each one group (``terrain.scene_options``); the entries of a
    user's refinement spell no part of one as a keyword of its own, and stay near ten
    parameters."""
    import importlib
    import inspect

    module, _, name = dotted.rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    spelled = {p: GROUPED_PARTS[p] for p in parameters if p in GROUPED_PARTS}
    assert not spelled, f"{dotted}: {spelled} are parts of a group; take them in the group named"
    assert len(parameters) <= 15, f"{dotted} takes {len(parameters)} parameters: group them"


@pytest.mark.parametrize("dotted", ("sarheight.terrain.simulated.simulate_scene",
                                    "sarheight.terrain.scene_sets.simulate_scenes"))
def test_scene_builders_take_their_axes_and_options_as_groups(dotted):
    """docs/architecture.md's convention: a simulated scene's observation and products, and
    a scene set's axes (``SceneAxes``), are groups: the builders stay near ten parameters
    and spell no axis as a keyword of their own."""
    import dataclasses
    import importlib
    import inspect

    from sarheight.terrain.scene_sets import SceneAxes

    module, _, name = dotted.rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    spelled = sorted(set(parameters) & {field.name for field in dataclasses.fields(SceneAxes)} - {"priors"})
    assert not spelled, f"{dotted}: {spelled} are axes of a set; take them in axes=SceneAxes(...)"
    assert len(parameters) <= 15, f"{dotted} takes {len(parameters)} parameters: group them"


def test_trained_models_are_loaded_by_one_loader():
    """docs/architecture.md's convention: checkpoints become trained models only through
    ``training/trained.load_checkpoint`` (``trained_model`` and ``trained_classifier`` build
    them from a checkpoint read as data; nothing else calls them, and nothing calls
    ``torch.load`` but the one door, and the reader of a pretrained encoder's state dict,
    a torchvision file and no checkpoint, read as data too)."""
    builders = {"trained_model", "trained_classifier"}
    readers = {"sarheight/training/checkpoints.py", "sarheight/models/resnet.py"}
    homes = {"sarheight/training/trained.py", "sarheight/training/checkpoints.py",
             "sarheight/training/classification.py"}
    offenders = []
    for path in sorted((ROOT / "sarheight").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            dotted = ast.unparse(node.func)
            if (name in builders and relative not in homes) or (
                    dotted == "torch.load" and relative not in readers):
                offenders.append(f"{relative}:{node.lineno} {dotted}")
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(MODULES))
def test_checked_values_are_carried_as_types_not_registered(name):
    """docs/architecture.md's convention: what was checked or derived once travels as a
    value of its own type (``dem.Dem`` with its ``raster.Grid``; ``terrain.variables.Scene``
    with what is derived from it), not in a process-wide registry keyed by the identity of
    a DataArray or Dataset (weak references to them, dicts by ``id()``)."""
    tree = ast.parse(MODULES[name].read_text())
    imports = [node.lineno for node in ast.walk(tree)
               if (isinstance(node, ast.Import) and any(alias.name == "weakref" for alias in node.names))
               or (isinstance(node, ast.ImportFrom) and node.module == "weakref")]
    assert not imports, (f"sarheight.{name} imports weakref (lines {imports}): carry what was checked or derived "
                         "in a value of its own type (a Dem, a Scene), not in a registry of objects")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_all_stands_at_the_top(name):
    """A module's ``__all__`` comes before its first function or class: what it offers is
    read before how it is done."""
    tree = ast.parse(MODULES[name].read_text())
    names = [node for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)]
    if not names:
        return
    first = next((node.lineno for node in tree.body
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))), None)
    assert first is None or names[0].lineno < first, \
        f"sarheight.{name} defines __all__ at line {names[0].lineno}, after its first definition (line {first})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_constants_come_before_the_code_that_reads_them(name):
    """A module's constant (an upper-case name) stands before the first function or class
    that reads it, unless its value needs one of the module's own definitions (a table of
    its functions, as the commands' ACTIONS)."""
    tree = ast.parse(MODULES[name].read_text())
    definitions: list[ast.AST] = []
    own = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions.append(node)
            continue
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        constants = {target.id for target in targets if isinstance(target, ast.Name) and target.id.isupper()}
        if not constants or {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)} & own:
            continue
        for definition in definitions:
            read = constants & {n.id for n in ast.walk(definition) if isinstance(n, ast.Name)}
            assert not read, (f"sarheight.{name} defines {sorted(read)} at line {node.lineno}, after "
                              f"{definition.name} (line {definition.lineno}) reads it: move it up")
