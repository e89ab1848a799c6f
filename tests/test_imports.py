"""The layering rule of docs/design.md, read from the source with `ast` (function-local imports included):
the import graph of maskflow_jax has no cycle, no library module imports a mode (maskflow_jax/modes/),
no mode imports another mode, and every mode of main.py is a module of maskflow_jax/modes/ with `run`."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "maskflow_jax"
MODES = f"{PACKAGE}.modes"
ENTRY = f"{PACKAGE}.main"  # the entry point dispatches to the modes by name (importlib), above every mode


def modules():
    """{dotted module name: path} of every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name, path, known):
    """The package modules `name` imports anywhere in its file (top level, functions, branches), with the
    packages above each (importing a.b.c runs a/__init__ and a/b/__init__ first)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a module a.b.c, `from a.b import name` of a.b
                t = t.rpartition(".")[0]
            parts = t.split(".") if t else []
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    found.discard(name)
    return found


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def is_mode(name):
    return name.startswith(MODES + ".")


def find_cycle(edges):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_walker_sees_local_relative_and_parent_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import os\nfrom maskflow_jax.data import heldout\n\ndef f():\n    from . import stages\n"
        "    import maskflow_jax.eval.fvd as fvd\n"
    )
    known = modules()
    found = imports(f"{PACKAGE}.x", src, known)
    assert {f"{PACKAGE}.data.heldout", f"{PACKAGE}.data", PACKAGE, f"{PACKAGE}.stages", f"{PACKAGE}.eval.fvd"} <= found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modes_import_only_the_library_and_the_library_no_mode():
    bad = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in sorted(targets)
        if is_mode(b) and a != ENTRY and (is_mode(a) or not a.startswith(MODES))
    ]
    assert not bad, "a mode imported by a library module or another mode (docs/design.md): " + "; ".join(bad)


def test_every_mode_of_main_is_a_modes_module_with_run():
    main = ast.parse((ROOT / PACKAGE / "main.py").read_text(encoding="utf-8"))
    table = next(n.value for n in main.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "MODES")
    targets = ast.literal_eval(table)
    known = modules()
    assert all(is_mode(t) and t in known for t in targets.values()), targets
    for target in targets.values():
        tree = ast.parse(known[target].read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body), target
    assert set(targets.values()) == {m for m in known if is_mode(m)}  # no mode without a --mode name


def test_configs_and_benchmarks_import_from_any_directory(tmp_path):
    """`configs` is installed with the package (setup.py), so a config imports outside the repository;
    benchmarks run as `python -m benchmarks.<name>` from the repository root without sys.path edits."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import configs.topdown, configs.maze; print(configs.topdown.get_config().data.name)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "topdown", out.stderr[-2000:]
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        assert "sys.path" not in path.read_text(encoding="utf-8"), f"{path.name} edits sys.path"
