"""The floors of the house (``docs/architecture.md``), read from the source with ``ast`` (no import
is executed): no import circle among npctr's modules, no import from a higher floor, ``npctr.ops``
on NumPy alone, and the optional extras imported only inside the functions that need them."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "npctr"

#: floor of each part of the package; a module may import from its own floor or a lower one
FLOORS = {
    "leaf": 0,       # _version, registry, conventions, _validation, _blas, initializers, sparse,
                     # feature_column, io, gradcheck, datasets, testing (the normwise rule, NumPy
                     # only, so that interop's compare and any backend's tests use it): import no other floor
    "ops": 1,        # the equations
    "layers": 2,
    "training": 3,   # the Trainer that Model inherits (Keras 3's split); knows no model class
    "serving": 3,    # the Predictor a model hands out, batch and Dask scoring; knows no model class
    "models": 4,
    "interop": 5,    # importers, exporters, golden / compare
    "conformance": 5,  # the conformance suite: cases from models, references from golden, judged by compare
    "top": 6,        # the package, the command line, demo, plot, old module paths
}
TOP = {"npctr", "npctr.__main__", "npctr.demo", "npctr.plot", "npctr.inference", "npctr.dask"}
#: floors that share a level but must not import each other
APART = {("training", "serving"), ("serving", "training"), ("interop", "conformance")}
OPTIONAL = {"h5py", "onnx", "onnxruntime", "dask", "distributed", "matplotlib", "pyarrow", "pandas",
            "fsspec", "torch", "tensorflow", "keras", "tf_keras", "deepctr", "deepctr_torch"}
#: os, threading and queue for npctr.ops.blocks (row blocks over the cores)
STDLIB_FOR_OPS = {"typing", "math", "numbers", "os", "threading", "queue"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module):
    if module in TOP:
        return "top"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    return "leaf"


def imports(module):
    """``(imported npctr module, line, at module level)`` and third-party top-level names."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found, external = [], []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        at_top = id(node) in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "npctr":
                    found.append((alias.name, node.lineno, at_top))
                else:
                    external.append((alias.name.split(".")[0], node.lineno, at_top))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.split(".")[0] != "npctr":
                external.append((target.split(".")[0], node.lineno, at_top))
                continue
            for alias in node.names:        # `from pkg import submodule` depends on the submodule
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno, at_top))
    return [(m, line, top) for m, line, top in found if m in MODULES], external


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_parsed():
    assert {"npctr.ops.dense", "npctr.serving.predictor", "npctr.training.trainer", "npctr.registry"} <= set(MODULES)


def test_no_import_circles():
    edges = {m: sorted({t for t, _, _ in GRAPH[m][0] if t != m}) for m in MODULES}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(MODULES[c].relative_to(ROOT).as_posix()
                                                              for c in cycle) for cycle in cycles)


def test_no_import_points_up():
    upward = []
    for m, (found, _) in GRAPH.items():
        for target, line, _ in found:
            a, b = floor(m), floor(target)
            if FLOORS[b] > FLOORS[a] or (a, b) in APART:
                upward.append(f"{MODULES[m].relative_to(ROOT)}:{line} ({a}) imports {target} ({b})")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_ops_imports_numpy_alone():
    for m in MODULES:
        if floor(m) != "ops":
            continue
        found, external = GRAPH[m]
        # and npctr._blas: the BLAS NumPy loaded (npctr.ops.blocks asks its thread count)
        assert all(floor(t) == "ops" or t == "npctr._blas" for t, _, _ in found), (m, found)
        assert {name for name, _, _ in external} <= {"numpy"} | STDLIB_FOR_OPS, (m, external)


def test_layers_know_no_model_training_serving_or_interop():
    for m, (found, _) in GRAPH.items():
        if floor(m) == "layers":
            bad = [t for t, _, _ in found if floor(t) in ("models", "training", "serving", "interop", "top")]
            assert not bad, (MODULES[m], bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_optional_extras_only_inside_functions(module):
    _, external = GRAPH[module]
    at_top = sorted({name for name, _, top in external if top and name in OPTIONAL})
    assert not at_top, f"{MODULES[module].relative_to(ROOT)} imports {at_top} at module level"


def test_the_checks_catch_a_bad_graph(monkeypatch):
    """The floor test itself fails on an upward import (a layer importing a model)."""
    found, external = GRAPH["npctr.layers.core"]
    monkeypatch.setitem(GRAPH, "npctr.layers.core", (found + [("npctr.models.ctr", 1, True)], external))
    with pytest.raises(AssertionError, match="layers/core.py:1 .layers. imports npctr.models.ctr"):
        test_no_import_points_up()
    with pytest.raises(AssertionError):
        test_layers_know_no_model_training_serving_or_interop()
    found, external = GRAPH["npctr.ops.dense"]
    monkeypatch.setitem(GRAPH, "npctr.ops.dense", (found + [("npctr.ops.attention", 1, True)], external))
    with pytest.raises(AssertionError, match="ops/dense.py -> npctr/ops/attention.py -> npctr/ops/dense.py"):
        test_no_import_circles()


def test_the_version_is_a_literal_setuptools_reads_without_numpy():
    """setup.cfg's ``version = attr: ...`` must name a module whose ``__version__`` is a plain
    string assignment: setuptools reads it from the AST then, instead of importing the package
    (which needs NumPy, absent from pip's isolated build environment on a fresh machine)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    spec = cfg["metadata"]["version"]
    assert spec.startswith("attr:"), spec
    module, _, name = spec[len("attr:"):].strip().rpartition(".")
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    literal = [node for node in tree.body if isinstance(node, ast.Assign)
               and [getattr(t, "id", None) for t in node.targets] == [name]
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]
    assert literal, f"{path}: {name} is not a string literal"
    assert not [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))], \
        f"{path} imports: setuptools would execute it"
