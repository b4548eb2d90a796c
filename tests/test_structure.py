"""The shape of `bot/`: no import cycle, no module over 450 lines, every package says what it is for,
only the WeChat client imports wechaty, and the dialog's registry names handlers the dialog has.

The import graph is read from the source (ast), imports inside functions included: a cycle hidden in
a function is still a cycle.
"""
import ast
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"
MAX_LINES = 450


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in BOT.rglob("*.py"):
        parts = list(path.relative_to(BOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every import: `import a.b` -> (a.b, None), `from a import b` -> (a, b)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [((node.level, node.module or ""), a.name) for a in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        deps = set()
        for target, imported in _imports(path):
            if isinstance(target, tuple):  # from ... import
                level, module = target
                if level:
                    base = package.split(".")[:len(package.split(".")) - level + 1]
                    module = ".".join(base + ([module] if module else []))
                if f"{module}.{imported}" in modules:
                    deps.add(f"{module}.{imported}")
                elif module in modules:
                    deps.add(module)
            elif target in modules:
                deps.add(target)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_under_bot():
    graph = import_graph()
    assert "bot.engine" in graph and "bot.dialog.flow" in graph["bot.engine"]
    found = cycles(graph)
    assert not found, "import cycles under bot/: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")" for c in found)


def test_no_module_under_bot_is_over_450_lines():
    sizes = {str(p.relative_to(BOT.parent)): len(p.read_text(encoding="utf-8").splitlines())
             for p in BOT.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_every_package_says_what_it_is_for():
    for directory in [BOT, *(d for d in BOT.rglob("*") if d.is_dir() and any(d.glob("*.py")))]:
        init = directory / "__init__.py"
        assert init.is_file(), f"{directory.relative_to(BOT.parent)} has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} has no docstring"


def test_only_the_wechat_client_imports_wechaty():
    client = BOT / "transport" / "wechat" / "client.py"
    libraries = {"wechaty", "wechaty_puppet", "wechaty_puppet_service", "wechaty_grpc", "grpclib", "betterproto"}
    importers = set()
    for path in BOT.rglob("*.py"):
        names = [t if isinstance(t, str) else t[1] for t, _ in _imports(path)]
        if any(n and n.split(".")[0] in libraries for n in names):
            importers.add(path)
    assert importers == {client}


def test_every_scene_and_command_is_a_handler_of_the_dialog():
    """The registry names functions the composed dialog has (no stale registration), and every
    command of the knowledge base has a handler."""
    from bot.dialog.flow import Dialog
    from bot.dialog.registry import COMMANDS, SCENES
    from bot.kb import load_knowledge

    for state, scene in SCENES.items():
        assert scene.state == state and scene.on_text is not None
        for fn in (scene.on_text, scene.on_file, scene.enter, scene.on_idle):
            if fn is not None:
                assert getattr(Dialog, fn.__name__) is fn, f"{state}: {fn.__qualname__} is not Dialog's"
    for name, fn in COMMANDS.items():
        assert getattr(Dialog, fn.__name__) is fn, f"command {name}: {fn.__qualname__} is not Dialog's"
    kb = load_knowledge(BOT.parent / "knowledge")
    assert set(kb.commands) <= set(COMMANDS), set(kb.commands) - set(COMMANDS)
