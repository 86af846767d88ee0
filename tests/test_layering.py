"""The house's import rules hold for the whole package (layering.py reads the sources).

The checker is tested first on a small tree with known breaks, so a pass on the real package
means the rules were checked, not that the checker saw nothing.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from layering import check, layer_folders, read_modules

ROOT = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text), encoding="utf-8")
    return root


CLEAN = {
    "setup.py": 'LAYERS = ("alpha", "beta")\n',
    "pkg/__init__.py": "",
    "pkg/__main__.py": "from pkg.cli import main\n",
    "pkg/core.py": "import json\n\nfrom pkg import util\n",
    "pkg/util.py": "from ._helpers import helper\n",
    "pkg/_helpers.py": "helper = 1\n",
    "pkg/store/__init__.py": "from pkg.store.duck import Duck\n",
    "pkg/store/duck.py": "from pkg.store import _wire\n",
    "pkg/store/_wire.py": "",
    "pkg/cli/__init__.py": """\
        from pkg import core
        from pkg.alpha import a
        from pkg.beta.b import thing
        from pkg.cli._commands import run

        def main(): ...
        """,
    "pkg/cli/_commands.py": "from pkg.beta import b\n",
    "pkg/cli/_flags.py": "",
    "alpha/__init__.py": "",
    "alpha/a.py": """\
        from typing import TYPE_CHECKING

        from pkg.core import json
        from . import _inner
        if TYPE_CHECKING:
            from pkg.alpha.sub import deep
        """,
    "alpha/_inner.py": "",
    "alpha/leaf.py": "x = 1\n",
    "alpha/sub/__init__.py": "",
    "alpha/sub/deep.py": "from .. import _inner\nfrom pkg.alpha import a\n",
    "beta/__init__.py": "",
    "beta/b.py": "from pkg.store import Duck\nthing = 1\n",
}


def test_the_checker_passes_a_tree_that_keeps_the_rules(tmp_path):
    root = _write(tmp_path, CLEAN)
    assert layer_folders(root) == ("alpha", "beta")
    assert check(root, "pkg", ("alpha", "beta")) == []


def test_the_checker_resolves_relative_and_from_imports(tmp_path):
    root = _write(tmp_path, CLEAN)
    modules = read_modules(root, "pkg", ("alpha", "beta"))
    assert set(modules) == {
        "pkg", "pkg.__main__", "pkg.core", "pkg.util", "pkg._helpers", "pkg.store",
        "pkg.store.duck", "pkg.store._wire", "pkg.cli", "pkg.cli._commands", "pkg.cli._flags",
        "pkg.alpha", "pkg.alpha.a", "pkg.alpha._inner", "pkg.alpha.leaf", "pkg.alpha.sub",
        "pkg.alpha.sub.deep", "pkg.beta", "pkg.beta.b"}
    targets = lambda name: {(i.target, i.line, i.runs)  # noqa: E731
                            for i in modules[name].imports}
    assert targets("pkg.util") == {("pkg._helpers", 1, True)}
    assert targets("pkg.store.duck") == {("pkg.store._wire", 1, True)}
    assert targets("pkg.alpha.a") == {("typing", 1, True), ("pkg.core", 3, True),
                                      ("pkg.alpha._inner", 4, True),
                                      ("pkg.alpha.sub.deep", 6, False)}
    assert targets("pkg.alpha.sub.deep") == {("pkg.alpha._inner", 1, True),
                                             ("pkg.alpha.a", 2, True)}
    assert targets("pkg.beta.b") == {("pkg.store", 1, True)}


BROKEN = {
    # a core module reaching up into a layer, inside a function
    "pkg/core.py": """\
        import json

        def late():
            from pkg.alpha.leaf import x
            return x
        """,
    # a core module importing the CLI
    "pkg/util.py": "from ._helpers import helper\nimport pkg.cli\n",
    # a peer importing a peer, and a layer importing the CLI's private module
    "beta/b.py": """\
        from pkg.store import Duck
        from pkg.alpha import a
        from pkg.cli import _flags
        thing = 1
        """,
    # a layer importing the core's private modules, and a layer by its folder name
    "alpha/sub/deep.py": """\
        from pkg.store._wire import encode
        from pkg import _helpers
        import beta.b
        """,
    # a two-module cycle inside the core, at load time
    "pkg/left.py": "from pkg.right import r\nl = 1\n",
    "pkg/right.py": "import json\nfrom pkg import left\nr = 1\n",
}


def test_the_checker_names_every_broken_rule_with_file_and_line(tmp_path):
    root = _write(tmp_path, CLEAN | BROKEN)
    assert check(root, "pkg", ("alpha", "beta")) == [
        "alpha/sub/deep.py:1: pkg.alpha.sub.deep imports the private module pkg.store._wire "
        "from outside its package pkg.store",
        "alpha/sub/deep.py:2: pkg.alpha.sub.deep imports the private module pkg._helpers "
        "from outside its package pkg",
        "alpha/sub/deep.py:3: pkg.alpha.sub.deep imports beta.b by its folder name; it "
        "installs as pkg.beta.b",
        "beta/b.py:2: pkg.beta.b (layer beta) imports pkg.alpha.a from the peer layer alpha",
        "beta/b.py:3: pkg.beta.b (beta) imports the CLI module pkg.cli._flags; only the "
        "CLI wires layers",
        "beta/b.py:3: pkg.beta.b imports the private module pkg.cli._flags from outside "
        "its package pkg.cli",
        "pkg/core.py:4: core module pkg.core imports pkg.alpha.leaf from the layer alpha",
        "pkg/left.py:1: import cycle: pkg.left (pkg/left.py:1) -> pkg.right "
        "(pkg/right.py:2) -> pkg.left",
        "pkg/util.py:2: pkg.util (core) imports the CLI module pkg.cli; only the CLI wires "
        "layers",
    ]


def test_only_an_import_under_type_checking_makes_no_cycle(tmp_path):
    root = _write(tmp_path, CLEAN | {
        "pkg/left.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from pkg.right import r\n",
        "pkg/right.py": "from pkg import left\n",
    })
    assert check(root, "pkg", ("alpha", "beta")) == []  # left -> right never runs
    # A lazy import inside a function still ties the two modules together.
    (root / "pkg/left.py").write_text("def f():\n    from pkg.right import r\n",
                                      encoding="utf-8")
    assert check(root, "pkg", ("alpha", "beta")) == [
        "pkg/left.py:2: import cycle: pkg.left (pkg/left.py:2) -> pkg.right "
        "(pkg/right.py:1) -> pkg.left"]


def test_a_longer_cycle_is_spelled_out_once(tmp_path):
    root = _write(tmp_path, CLEAN | {
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "\nfrom pkg import c\n",
        "pkg/c.py": "\n\nimport pkg.a\n",
    })
    assert check(root, "pkg", ("alpha", "beta")) == [
        "pkg/a.py:1: import cycle: pkg.a (pkg/a.py:1) -> pkg.b (pkg/b.py:2) -> pkg.c "
        "(pkg/c.py:3) -> pkg.a"]


def test_a_missing_layer_folder_fails_loudly(tmp_path):
    root = _write(tmp_path, {"setup.py": 'LAYERS = ("alpha",)\n', "pkg/__init__.py": ""})
    with pytest.raises(AssertionError, match="package folders not found"):
        check(root, "pkg", layer_folders(root))


def test_computewatch_keeps_the_house_rules():
    layers = layer_folders(ROOT)
    assert set(layers) == {"collectors", "pipelines", "alerts", "dashboards", "reports"}
    modules = read_modules(ROOT, "computewatch", layers)
    assert len(modules) > 100, "the package was not read"  # guards a silently empty walk
    problems = check(ROOT, "computewatch", layers)
    assert not problems, f"{len(problems)} import rule(s) broken:\n" + "\n".join(problems)
