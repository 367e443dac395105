"""The package's shape: no import loops inside `sfd/`, and every module imports on its own.

Import statements are read with `ast` (those inside functions included: a lazy import that closes
a loop is still a loop, only a later one). `import a.b` is an edge to `a.b`; `from a import b` to
`a` (its __init__ runs first) and to `a.b` when that is a module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sfd"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from package import name` runs the package's __init__ first, whatever `name` is
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_sees_a_loop_closed_by_an_import_inside_a_function(tmp_path):
    module = tmp_path / "a.py"
    module.write_text("import os\n\ndef later():\n    from . import b\n")
    known = {"sfd.x": module, "sfd.x.a": module, "sfd.x.b": module}
    assert _imports("sfd.x.a", module, known) == {"sfd.x", "sfd.x.b"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loops_inside_sfd():
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    loops = _cycles(graph)
    report = "\n".join(" <-> ".join(str(known[m].relative_to(PACKAGE.parent)) for m in loop) for loop in loops)
    assert not loops, f"import loops:\n{report}"


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """One interpreter loads the third-party libraries, then forks a child per sfd module that
    imports only that module: a module that works only after another sfd module fails here."""
    modules = [m for m in _modules() if not m.endswith("__main__")]
    script = textwrap.dedent(f"""
        import os, sys, importlib, traceback
        import numpy, torch, cv2, PIL.Image, safetensors, huggingface_hub, accelerate, diffusers  # noqa
        failed = []
        for name in {modules!r}:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status:
                failed.append(name)
        print("FAILED", failed)
        sys.exit(1 if failed else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
