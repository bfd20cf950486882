"""The shape of the code: no stdlib shadowing, library boundaries, the contract in sync."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kyso.agent.protocol import ErrorCode

ROOT = Path(__file__).resolve().parent.parent
IMPORTS = "import platform, token, inspect, uuid; import kyso.agent.token; "
CHECK = (
    "import os; assert platform.__file__.startswith(os.path.dirname(os.__file__)), platform; "
    "assert token.__file__.startswith(os.path.dirname(os.__file__)), token; "
    "assert hasattr(platform, 'system') and hasattr(token, 'NAME')"
)


@pytest.mark.parametrize("where", [".", "agent", "agent/token", "platform"])
def test_stdlib_platform_and_token_are_never_shadowed(where: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS + CHECK],
        cwd=ROOT / where,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_no_init_at_the_shadowing_folders() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "agent" / "token" / "__init__.py").exists()


# Which top-level libraries may be imported where (architecture.md, "Library boundaries").
BOUNDARIES = {
    # The agent's token layer, and the platform's central passport signer (one module).
    "pkcs11": ("agent/token/", "platform/passport/hsm.py"),
    "websockets": ("agent/server.py",),
    "PySide6": ("agent/ui/",),
    "flask": ("platform/",),
    "sqlalchemy": ("platform/",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("library", sorted(BOUNDARIES))
def test_library_boundaries(library: str) -> None:
    allowed = BOUNDARIES[library]
    offenders = []
    for folder in ("agent", "platform"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if library in _imports(path) and not relative.startswith(allowed):
                offenders.append(relative)
    assert offenders == []


def test_pkcs11_in_the_platform_is_the_passport_signer_alone() -> None:
    """Any module path with pkcs11 in it (python-pkcs11, pyhanko.sign.pkcs11, ...)."""
    users = set()
    for path in (ROOT / "platform").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any("pkcs11" in name.split(".") for name in names):
                users.add(path.relative_to(ROOT).as_posix())
    assert users == {"platform/passport/hsm.py"}


def test_agent_never_imports_the_platform() -> None:
    for path in (ROOT / "agent").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "kyso.platform" not in source, path


def test_protocol_md_examples_match_the_golden_files() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from sync_protocol_examples import sync
    finally:
        sys.path.pop(0)
    doc = (ROOT / "protocol.md").read_text(encoding="utf-8")
    assert sync(doc) == doc, "run: python scripts/sync_protocol_examples.py"
    named = set(re.findall(r"<!-- golden: ([\w.-]+) -->", doc))
    assert named == {p.name for p in (ROOT / "tests" / "golden").glob("*.json")}


def test_protocol_md_documents_every_error_code() -> None:
    doc = (ROOT / "protocol.md").read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"| `{code}` |" in doc, code


def test_golden_files_are_valid_exchanges() -> None:
    for path in (ROOT / "tests" / "golden").glob("*.json"):
        exchange = json.loads(path.read_text(encoding="utf-8"))
        assert exchange["exchange"][0]["from"] == "page"
        for step in exchange["exchange"]:
            assert step["from"] in ("page", "agent")
            assert "type" in step["message"]


def test_every_package_is_in_the_distribution() -> None:
    """pyproject lists the packages one by one (the folders are mapped to kyso.*): a package
    missing there works in the editable install and vanishes from a wheel or the bundle. Data
    folders (templates, locales, static files) are packages too, as setuptools asks: otherwise
    it warns "Package would be ignored" and a future setuptools leaves them out."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for base, name in (("agent", "kyso.agent"), ("platform", "kyso.platform")):
        for folder in [ROOT / base, *(p for p in (ROOT / base).rglob("*") if p.is_dir())]:
            holds_files = any(child.is_file() for child in folder.iterdir())
            relative = folder.relative_to(ROOT / base).parts
            if not holds_files or "__pycache__" in folder.parts:
                continue
            if not all(part.isidentifier() for part in relative):
                continue  # not importable (schema-history/1.3.3): a parent's package data
            found.add(".".join((name, *relative)))
    assert found - listed == set()


def _closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Names of the installed distributions that these requirements pull in, transitively."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, active = pending.pop()
        markers = requirement.marker
        if markers is not None and not any(
            markers.evaluate({"extra": extra}) for extra in (active or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        wanted = set(requirement.extras)
        pending.extend((Requirement(r), wanted) for r in dist.requires or ())
    return seen


def test_the_platform_half_installs_no_qt_and_the_agent_half_no_web_stack() -> None:
    """`pip install .[platform]` on a server brings no Qt; the agent's bundle environment
    (`.[bundle]`) brings no Flask, SQLAlchemy, PDF or database library."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    platform_side = _closure([*project["dependencies"], *extras["platform"]], set())
    bundle_tools = [r for r in extras["bundle"] if not r.startswith("kyso[")]
    agent_side = _closure([*project["dependencies"], *extras["agent"], *bundle_tools], set())
    assert "flask" in platform_side  # the walk works
    assert "pyside6-essentials" in agent_side
    assert {"pyside6-essentials", "shiboken6", "keyring", "websockets"} & platform_side == set()
    web_stack = {"flask", "sqlalchemy", "psycopg", "pyhanko", "openpyxl", "pillow", "fpdf2"}
    assert web_stack & agent_side == set()


# --- The import graph: layers a newcomer can see (issue 13) ---------------------------------

PACKAGES = {"kyso.agent": ROOT / "agent", "kyso.platform": ROOT / "platform"}

# No exception: the agent's config <-> winreg_config cycle is gone since its fix was merged.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if "migrations" in path.relative_to(folder).parts:
                continue  # Alembic's scripts, loaded by Alembic
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every import, at module level or inside a function: the project's modules each module
    imports, and the top-level outside libraries it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    libraries: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[: len(package) - (node.level - 1)]
                    base = ".".join([*parent, *([base] if base else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                if not target.startswith("kyso."):
                    libraries[name].add(target.split(".")[0])
                    continue
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph, libraries


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_views(module: str) -> bool:
    """A views module: a feature's pages or API (``*.views``, ``*_views``, the downloads)."""
    last = module.rpartition(".")[2]
    return last == "views" or last.endswith("_views") or module == "kyso.platform.downloads"


# The web layer and the entry points: the only platform modules that may use Flask. Everything
# else (services, models, scopes, rules, clients) is plain Python a CLI or a test calls directly.
WEB = {
    "kyso.platform.app",
    "kyso.platform.web",
    "kyso.platform.authorization",
    "kyso.platform.request_json",  # the app's JSON provider (Flask's)
    "kyso.platform.signing.wiring",  # trust anchors, manifest key, revocation from app config
}
ENTRY_POINTS = {
    "kyso.platform.entry",  # the kyso-platform program: prepares, then runs the command line
    "kyso.platform.ops.serve",  # the production server (gunicorn's app, its logging)
    "kyso.platform.ops.logs",  # JSON logs carrying the request id
    "kyso.platform.registry.reference_server",  # the reference registry: its own small WSGI app
    "kyso.platform.testpki",  # the test and demo PKI: its own small HTTP service
    "kyso.platform.records.demo",  # the demo-data tool (also writes the reference registry's data)
}
WEB_LIBRARIES = {"flask", "flask_wtf", "werkzeug"}


def _is_web(module: str) -> bool:
    last = module.rpartition(".")[2]
    return module in WEB or module in ENTRY_POINTS or _is_views(module) or last == "cli"


def test_no_import_cycles() -> None:
    cycles = [sorted(c) for c in _cycles(_import_graph()[0]) if c not in KNOWN_CYCLES]
    assert cycles == []


def test_services_and_models_import_no_flask_and_no_views() -> None:
    graph, libraries = _import_graph()
    offenders = []
    for module in sorted(graph):
        if not module.startswith("kyso.platform.") or _is_web(module):
            continue
        offenders += [f"{module} -> {lib}" for lib in sorted(libraries[module] & WEB_LIBRARIES)]
        offenders += [f"{module} -> {dep}" for dep in sorted(graph[module]) if _is_web(dep)]
    assert offenders == []


def test_nothing_imports_the_composition_root() -> None:
    graph, _ = _import_graph()
    importers = {m for m, deps in graph.items() if "kyso.platform.app" in deps}
    assert importers <= {"kyso.platform.cli"}  # the command line builds the app


def test_a_views_module_never_imports_another_features_views() -> None:
    graph, _ = _import_graph()
    offenders = []
    for module, deps in sorted(graph.items()):
        if not _is_views(module):
            continue
        feature = module.split(".")[2]
        offenders += [
            f"{module} -> {dep}"
            for dep in sorted(deps)
            if _is_views(dep) and dep.split(".")[2] != feature
        ]
    assert offenders == []


def test_the_import_graph_sees_function_level_and_relative_imports() -> None:
    """The checks above would pass vacuously if the graph missed imports."""
    graph, libraries = _import_graph()
    assert "kyso.platform.web" in graph["kyso.platform.authorization"]  # inside install()
    assert "kyso.platform.signing.batch_views" in graph["kyso.platform.app"]
    assert "flask" in libraries["kyso.platform.web"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


# prometheus_client's multiprocess variable: set for the library before it is imported (serve),
# and read back where the library's multiprocess mode is used. Not a platform setting.
# The picture decoder's child process gets the PATH alone (passport/pictures.py): not a setting.
ENVIRONMENT_READERS = {
    "platform/settings.py",
    "platform/ops/serve.py",
    "platform/ops/metrics.py",
    "platform/passport/pictures.py",
}


def test_only_the_settings_module_reads_the_environment() -> None:
    """``kyso.platform.settings`` reads every variable once, for ``create_app`` to check."""
    readers = set()
    for path in (ROOT / "platform").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            reads = (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv", "environb", "getenvb")
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "getenv") for a in node.names)
            )
            if reads:
                readers.add(path.relative_to(ROOT).as_posix())
    assert "platform/settings.py" in readers  # the check sees what it looks for
    assert readers <= ENVIRONMENT_READERS


def _attribute_users(attribute: str, owner: str | None = None) -> set[str]:
    """Platform files that use ``x.attribute`` (``x.owner.attribute`` when owner is given) or
    call a function of that name."""
    users = set()
    for path in (ROOT / "platform").rglob("*.py"):
        if "migrations" in path.parts:
            continue  # Alembic's environment and scripts: history, as they were written
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute) or node.attr != attribute:
                continue
            if owner is None or (
                isinstance(node.value, ast.Attribute) and node.value.attr == owner
            ):
                users.add(path.relative_to(ROOT).as_posix())
    return users


def test_one_database_dialect_helper() -> None:
    """Which database it is: ``db.backend`` (``is_postgresql``, ``is_sqlite``) alone asks."""
    assert _attribute_users("name", owner="dialect") == {"platform/db.py"}


def test_one_date_parser() -> None:
    """The dates people type: ``inputs.parse_date``, in every form, filter and import. The
    reference registry (its own small service) reads its dataset's one fixed format."""
    assert _attribute_users("strptime") == {"platform/registry/reference_server.py"}
    assert _callers("parse_day") == set()  # formatting.parse_day was the second parser
    assert _callers("parse_date") >= {
        "platform/signing/search.py",
        "platform/feedback/service.py",
        "platform/corrections/views.py",
        "platform/passport/lookup.py",
        "platform/users/views.py",
        "platform/records/importer/rows.py",
        "platform/signing/revocation.py",  # the day of "compromised from dd/mm/yyyy hh:mm"
    }


def _dose_joins() -> set[str]:
    """Platform places that join a dose to its person, product or facility, or a row to the dose
    it names, by hand: a ``join``/``outerjoin`` whose condition uses ``Dose.person_id``,
    ``Dose.product_id`` or ``Dose.facility_id``, or that joins ``Dose`` on a ``*.dose_id``."""
    found = set()
    for path in (ROOT / "platform").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("join", "outerjoin")
                and len(node.args) == 2
            ):
                continue
            target, condition = (ast.unparse(argument) for argument in node.args)
            links = ("Dose.person_id", "Dose.product_id", "Dose.facility_id")
            if any(link in condition for link in links) or (
                target == "Dose" and ".dose_id" in condition
            ):
                found.add(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    return found


def _callers(function: str) -> set[str]:
    """Platform files that call ``function`` by its bare name."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "platform").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == function
    }


def test_one_read_model_for_a_dose_and_what_it_points_to() -> None:
    """Search, preview, selection, batches, statistics and issuance read a dose with its
    person, product and facility through ``records/readmodel.py`` alone, which spells the
    joins through variables (so this check does not see it)."""
    assert _dose_joins() == set()
    assert _callers("with_dose_details") >= {
        "platform/signing/search.py",
        "platform/signing/preview.py",
        "platform/signing/selection.py",
        "platform/signing/batches/prepare.py",
        "platform/stats/service.py",
    }
    assert _callers("join_dose") >= {
        "platform/signing/batches/queries.py",
        "platform/passport/issuance.py",
    }


# --- Each domain owns its models (issue 13) -------------------------------------------------

# Every table and the domain that owns it: the feature package (platform/<owner>/) or plumbing
# module (platform/<owner>.py) whose service writes it, or "org", the organisation every
# feature reads and none owns. Its model lives in kyso.platform.models.<owner>, nowhere else.
TABLE_OWNERS = {
    "areas": "org",
    "facilities": "org",
    "signing_units": "org",
    "users": "users",
    "signing_certificates": "users",
    "audit_events": "auth",
    "auth_sessions": "auth",
    "people": "records",
    "doses": "records",
    "vaccine_products": "records",
    "signing_selections": "signing",
    "signing_batches": "signing",
    "signing_batch_items": "signing",
    "signing_attempts": "signing",
    "signing_evidence": "signing",
    "dose_signatures": "signing",
    "timestamp_queue": "signing",
    "passport_queue": "passport",
    "passports": "passport",
    "passport_signers": "passport",
    "passport_runs": "passport",
    "passport_errors": "passport",
    "feedback": "feedback",
    "feedback_replies": "feedback",
    "record_versions": "corrections",
    "correction_requests": "corrections",
    "throttle_attempts": "throttle",
    "stats_people": "stats",
}
MODELS = ROOT / "platform" / "models"


def _declared_tables(path: Path) -> dict[str, str]:
    """The classes of one source file that declare a table: class name -> ``__tablename__``."""
    tables = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if (
                isinstance(statement, ast.Assign)
                and any(
                    isinstance(t, ast.Name) and t.id == "__tablename__" for t in statement.targets
                )
                and isinstance(statement.value, ast.Constant)
            ):
                tables[node.name] = str(statement.value.value)
    return tables


def test_every_model_lives_in_its_owners_module() -> None:
    """``models/<owner>.py`` holds the tables of the domain that owns them, and only those."""
    found = {}
    for path in (ROOT / "platform").rglob("*.py"):
        if "migrations" in path.relative_to(ROOT / "platform").parts:
            continue  # Alembic's scripts describe tables, they declare no model
        for model, table in _declared_tables(path).items():
            found[table] = (model, path.relative_to(ROOT).as_posix())
    assert {"passport_queue", "dose_signatures", "audit_events"} <= set(found)  # it sees them
    misplaced = {
        table: where
        for table, (model, where) in found.items()
        if where != f"platform/models/{TABLE_OWNERS.get(table, '?')}.py"
    }
    assert misplaced == {}, "a model outside its owner's module, or a table with no owner"
    assert set(found) == set(TABLE_OWNERS)


def test_every_owner_is_a_feature_or_plumbing_module() -> None:
    platform = ROOT / "platform"
    for owner in set(TABLE_OWNERS.values()) - {"org"}:
        assert (platform / owner / "__init__.py").is_file() or (platform / f"{owner}.py").is_file()
    modules = {p.stem for p in MODELS.glob("*.py")} - {"__init__"}
    # columns.py: shared column helpers.
    assert modules == set(TABLE_OWNERS.values()) | {"columns", "stats"}


def test_importing_the_models_registers_every_table() -> None:
    """What Alembic's environment imports (``kyso.platform.models``) is enough for it to see
    every table and to resolve every relationship, in a fresh interpreter."""
    script = (
        "import kyso.platform.models\n"
        "from sqlalchemy.orm import configure_mappers\n"
        "from kyso.platform.db import Base\n"
        "configure_mappers()\n"
        "print(' '.join(sorted(Base.metadata.tables)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert set(done.stdout.split()) == set(TABLE_OWNERS)
    env = (ROOT / "platform" / "migrations" / "env.py").read_text(encoding="utf-8")
    assert "import kyso.platform.models" in env
    assert "target_metadata=Base.metadata" in env
