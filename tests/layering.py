"""The house rules for imports, checked by reading every module's source (no import is run).

The package is one import name (``computewatch``) assembled from several folders: the core in
``computewatch/`` and each layer in a top-level folder that setup.py maps to
``computewatch.<layer>``. The rules (README, "Layout"):

- the core (``computewatch.*`` but the CLI and the layers) imports no layer and not the CLI;
- a layer imports no peer layer and not the CLI; only the CLI wires layers together;
- nobody imports another package's private ``_name`` module;
- no two modules import each other, directly or round a longer loop;
- no module imports a layer by its folder name (``import pipelines``): that name is not
  installed.

Every import counts, also one inside a function: a lazy import is still a dependency, and a
pair of modules that import each other lazily is still one tangle. Only the cycle rule ignores
the imports under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CLI", "CORE", "Import", "Module", "check", "layer_folders", "read_modules"]

CORE = "core"
CLI = "cli"


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported, and whether the import ever runs."""

    target: str
    line: int
    runs: bool


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    imports: tuple[Import, ...]


def layer_folders(root: Path) -> tuple[str, ...]:
    """The layer folders setup.py maps into the package (its ``LAYERS`` tuple)."""
    tree = ast.parse((root / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "LAYERS"):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{root / 'setup.py'}: no LAYERS = (...) assignment")


def _source_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def _module_name(package: str, folder: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join([package, *parts]), is_package


def read_modules(root: Path, package: str, layers: tuple[str, ...]) -> dict[str, Module]:
    """Every module of ``package``: the core folder ``root/package`` and each layer folder."""
    folders = {package: root / package} | {f"{package}.{layer}": root / layer
                                           for layer in layers}
    missing = [str(folder) for folder in folders.values() if not folder.is_dir()]
    if missing:
        raise AssertionError(f"package folders not found: {missing}")
    found: dict[str, tuple[Path, bool]] = {}
    for prefix, folder in folders.items():
        for path in _source_files(folder):
            name, is_package = _module_name(prefix, folder, path)
            if name in found:
                raise AssertionError(f"{path} and {found[name][0]} are both module {name}")
            found[name] = (path, is_package)
    known = set(found)
    return {name: Module(name, path, is_package,
                         tuple(_imports(name, path, is_package, known)))
            for name, (path, is_package) in found.items()}


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether it ever runs (not under ``if TYPE_CHECKING:``)."""

    def walk(node: ast.AST, runs: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, runs
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from walk(child, False)
            for child in node.orelse:
                yield from walk(child, runs)
            return
        for child in ast.iter_child_nodes(node):
            yield from walk(child, runs)

    yield from walk(tree, True)


def _imports(name: str, path: Path, is_package: bool, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = name if is_package else name.rpartition(".")[0]
    for node, runs in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno, runs)
            continue
        if node.level:
            base_parts = here.split(".")
            if node.level - 1 >= len(base_parts):
                raise AssertionError(f"{path}:{node.lineno}: relative import above the package")
            base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        names = [alias.name for alias in node.names]
        submodules = [f"{source}.{n}" for n in names if f"{source}.{n}" in known]
        for target in submodules:
            yield Import(target, node.lineno, runs)
        if len(submodules) < len(names):  # some names are attributes of ``source`` itself
            yield Import(source, node.lineno, runs)


def _unit(module: str, package: str, layers: tuple[str, ...]) -> str | None:
    """Which part of the house a module belongs to: CORE, CLI, a layer, or None (outside)."""
    parts = module.split(".")
    if parts[0] != package:
        return None
    if len(parts) > 1 and parts[1] in (CLI, "__main__"):
        return CLI
    if len(parts) > 1 and parts[1] in layers:
        return parts[1]
    return CORE


def _private_home(target: str) -> str | None:
    """The package a private module belongs to, or None when no part of the name is private."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[:i])
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def check(root: Path, package: str, layers: tuple[str, ...]) -> list[str]:
    """Every broken rule as one line naming the file and line, sorted; empty when all hold."""
    modules = read_modules(root, package, layers)
    problems: list[str] = []

    def where(module: Module, line: int) -> str:
        return f"{module.path.relative_to(root)}:{line}"

    for module in modules.values():
        unit = _unit(module.name, package, layers)
        for imp in module.imports:
            target_unit = _unit(imp.target, package, layers)
            if imp.target.split(".")[0] in layers:
                problems.append(f"{where(module, imp.line)}: {module.name} imports {imp.target} "
                                f"by its folder name; it installs as {package}.{imp.target}")
            if target_unit is not None and target_unit != unit:
                if target_unit == CLI:
                    problems.append(f"{where(module, imp.line)}: {module.name} ({unit}) imports "
                                    f"the CLI module {imp.target}; only the CLI wires layers")
                elif unit == CORE:
                    problems.append(f"{where(module, imp.line)}: core module {module.name} "
                                    f"imports {imp.target} from the layer {target_unit}")
                elif unit != CLI and target_unit != CORE:
                    problems.append(f"{where(module, imp.line)}: {module.name} (layer {unit}) "
                                    f"imports {imp.target} from the peer layer {target_unit}")
            home = _private_home(imp.target)
            if home is not None and _unit(home, package, layers) is not None and not (
                    _inside(module.name, home)
                    and _unit(module.name, package, layers) == _unit(home, package, layers)):
                problems.append(f"{where(module, imp.line)}: {module.name} imports the private "
                                f"module {imp.target} from outside its package {home}")
    problems += _cycles(modules, root)
    return sorted(problems, key=_by_place)


def _by_place(problem: str) -> tuple[str, int, str]:
    path, line, text = problem.split(":", 2)
    return path, int(line), text


def _cycles(modules: Mapping[str, Module], root: Path) -> list[str]:
    """Each set of modules that import each other, with one loop spelled out."""
    edges: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        for imp in module.imports:
            if imp.runs and imp.target in modules and imp.target != module.name:
                edges[module.name].setdefault(imp.target, imp.line)
    problems = []
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        loop = _loop(sorted(component)[0], component, edges)
        steps = [f"{a} ({modules[a].path.relative_to(root)}:{edges[a][b]})"
                 for a, b in zip(loop, loop[1:] + loop[:1], strict=True)]
        problems.append(f"{modules[loop[0]].path.relative_to(root)}:{edges[loop[0]][loop[1]]}: "
                        f"import cycle: {' -> '.join(steps)} -> {loop[0]}")
    return problems


def _strongly_connected(edges: Mapping[str, Mapping[str, int]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so a deep import chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _loop(start: str, component: set[str], edges: Mapping[str, Mapping[str, int]]) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a cycle but no loop was found")
