"""The shape of the package, checked from its source: imports run one way, the core is
pure, the bench package is loaded on demand only, the root holds only the
definitions and the settings, and the README's settings table is the settings'."""

import ast
import subprocess
import sys
from pathlib import Path

from wado_pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wado_pipeline"

# layer -> the layers it may import (besides itself and the settings leaf)
ALLOWED = {
    "core": set(),
    "resources": {"core"},
    # Plug-ins of the Dagster instance (dagster.yaml), not of the code location; the
    # daemon's coordinator reads the run contract (the sensor's tick).
    "instance": {"core"},
    "sensors": {"core", "resources"},
    # The runs' pooled connection to Dagster's storage is the instance plug-ins' own.
    "assets": {"core", "resources", "instance"},
    "definitions": {"core", "resources", "sensors", "assets"},
    # The CLI and the benchmarks build resources (resources.configured), never every
    # definition: importing ``definitions`` builds them all.
    "cli": {"core", "resources", "sensors", "assets"},
    "bench": {"core", "resources", "sensors", "assets", "instance"},
}
# Leaves every layer but the core may import.
LEAVES = {"settings", "dagster_internals"}
# The pure core: no orchestration, broker or database libraries.
CORE_FORBIDDEN = ("dagster", "kafka", "sqlalchemy", "psycopg2", "pymysql", "requests")


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def modules():
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


def test_package_root_holds_only_definitions_settings_and_dagster_internals():
    files = {p.name for p in PACKAGE.glob("*.py")}
    assert files == {"__init__.py", "definitions.py", "settings.py", "dagster_internals.py"}


def test_imports_run_one_way():
    wrong = []
    for path in modules():
        layer = layer_of(path)
        if layer in LEAVES:
            continue
        top = set(imports(path, top_level_only=True))
        for name in imports(path, top_level_only=False):
            if layer == "cli" and name.startswith("wado_pipeline.bench") and name not in top:
                continue  # loaded on demand by `bench` and `produce --synthetic` only
            if not name.startswith("wado_pipeline."):
                continue
            target = name.split(".")[1]
            if target == layer or (target in LEAVES and layer != "core"):
                continue
            if target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_core_is_pure():
    wrong = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in (PACKAGE / "core").rglob("*.py")
        for name in imports(p, top_level_only=False)
        if name.split(".")[0] in CORE_FORBIDDEN
    ]
    assert not wrong, "\n".join(wrong)


def test_the_bench_package_is_loaded_on_demand_only():
    """Nothing imports wado_pipeline.bench at module level outside it; loading the
    definitions and the CLI leaves it unloaded (``bench`` and ``produce --synthetic``
    load it on demand)."""
    wrong = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in modules()
        if layer_of(p) != "bench"
        for name in imports(p, top_level_only=True)
        if name.startswith("wado_pipeline.bench")
    ]
    assert not wrong, "\n".join(wrong)
    probe = (
        "import sys, wado_pipeline.definitions, wado_pipeline.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('wado_pipeline.bench')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_readme_settings_table_is_the_settings():
    readme = (ROOT / "README.md").read_text()
    assert Settings.markdown_table() in readme


def test_every_setting_round_trips_through_the_environment():
    defaults = Settings()
    assert Settings.from_env(defaults.to_env()) == defaults
    assert Settings.from_env({}) == defaults


def test_docs_compatibility_table_is_the_suites_list():
    """The side-by-side suite allows only the differences of this list, and docs/upstream.md
    shows exactly this list."""
    from wado_pipeline.core.compatibility import markdown_table

    assert markdown_table() in (ROOT / "docs/upstream.md").read_text()


def test_docs_site_config_table_is_the_mapping():
    from wado_pipeline.settings import site_config_table

    assert site_config_table() in (ROOT / "docs/upstream.md").read_text()


# Runtime dependencies that production code does not import, each with the one place
# that uses it instead. Anything else must be imported by wado_pipeline/.
NOT_IMPORTED_ON_PURPOSE = {
    # `dagster dev` / `dagster-webserver` serve the UI from it (make dev, make demo)
    "dagster-webserver": "the Dagster UI process",
    # dagster.yaml's `storage: postgres:` makes Dagster load it (runs, events, schedules)
    "dagster-postgres": "dagster.yaml",
}
# distribution name -> the module it installs, where the two differ
IMPORT_NAMES = {
    "kafka-python": "kafka",
    "psycopg2-binary": "psycopg2",
    "SQLAlchemy": "sqlalchemy",
    "pylibjpeg-libjpeg": "libjpeg",
    "pylibjpeg-openjpeg": "openjpeg",
    "pylibjpeg-rle": "rle",
}


def test_every_runtime_dependency_earns_its_place():
    """Each dependency in pyproject.toml is imported by production code, or is one of
    the two used by name elsewhere (and is used there)."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0] for d in project["dependencies"]]
    imported = {
        name.split(".")[0]
        for path in PACKAGE.rglob("*.py")
        if layer_of(path) != "bench"  # benchmark tooling, loaded on demand
        for name in imports(path, top_level_only=False)
    }
    unused = []
    for dist in names:
        if dist in NOT_IMPORTED_ON_PURPOSE:
            continue
        module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
        if module not in imported:
            unused.append(dist)
    assert unused == [], f"declared but imported by no production code: {unused}"
    assert "storage:\n  postgres:\n" in (ROOT / "dagster.yaml").read_text()
    assert "dagster dev" in (ROOT / "Makefile").read_text()
    assert set(NOT_IMPORTED_ON_PURPOSE) <= set(names)


def _private_dagster_imports(path: Path) -> list[str]:
    return [n for n in imports(path, top_level_only=False) if n.startswith("dagster") and "._" in n]


def test_private_dagster_imports_are_in_one_module():
    """Dagster's underscored modules may change in any release: they are imported in
    ``dagster_internals`` only, which says why each is needed."""
    from wado_pipeline import dagster_internals

    wrong = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in [*PACKAGE.rglob("*.py"), *(ROOT / "wado_pipeline_tests").rglob("*.py")]
        if p.name != "dagster_internals.py"
        for name in _private_dagster_imports(p)
    ]
    assert not wrong, "\n".join(wrong)
    exported = {
        a.asname or a.name
        for node in ast.parse((PACKAGE / "dagster_internals.py").read_text()).body
        if isinstance(node, ast.ImportFrom)
        for a in node.names
    }
    assert exported == set(dagster_internals.WHY)


def test_no_two_modules_share_a_file_name():
    seen: dict[str, list[str]] = {}
    for p in PACKAGE.rglob("*.py"):
        if p.name != "__init__.py" and p.name != "__main__.py":
            seen.setdefault(p.name, []).append(str(p.relative_to(ROOT)))
    assert not {n: ps for n, ps in seen.items() if len(ps) > 1}


def test_the_package_never_imports_the_tests():
    wrong = [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in PACKAGE.rglob("*.py")
        for name in imports(p, top_level_only=False)
        if name.startswith("wado_pipeline_tests")
    ]
    assert not wrong, "\n".join(wrong)


MAX_FUNCTION_LINES = 60
# Functions allowed to be longer, each with why.
LONG_FUNCTIONS = {
    # A DICOM attribute table: one line per attribute of a synthetic CT/MR instance.
    ("wado_pipeline/bench/synthetic.py", "build_dataset"),
}


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS:
                    long.append(f"{rel}: {node.name} is {n} lines")
    assert not long, "\n".join(long)
