"""The memtune source a computation depends on, derived from its entry points rather than listed by hand.

`source_closure(roots)` starts from modules, classes and functions and follows what they use:

* a module counts whole, with every memtune module it imports anywhere in its source (at the top or inside a
  function: imports are read from the syntax tree, so a lazy import counts too);
* a class counts as its module (methods reach the whole module's globals);
* a function counts by its own source and default values, then by what it imports (those modules count whole)
  and what its code names: a memtune function is followed the same way, a memtune class or module counts
  whole, a plain constant (str, number, tuple, ..., compiled regex) by its value; any other object of ours it
  names makes its own module count whole.

So `optimize.evaluation.evaluate.ingest_all` brings in `ingest`, the policy, the store and the data types, but not
`optimize.evaluation.metrics`, which only the answering half of evaluate.py uses: editing a metric does not re-ingest.
Code outside the prefix (dspy, lancedb, ...) is not hashed: callers record those packages' versions.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PREFIX = "memtune"
_SIMPLE = (str, int, float, bool, bytes, type(None))


def _ours(name: str | None, prefix: str) -> bool:
    return name is not None and (name == prefix or name.startswith(prefix + "."))


def _origin(module_name: str) -> Path | None:
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None) or importlib.util.find_spec(module_name)
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


@lru_cache(maxsize=1024)
def _parse(path: str, mtime_ns: int, size: int) -> tuple[str, tuple[tuple[str, tuple[str, ...], int], ...]]:
    """(sha256 of the file, its imports as (module, names, level)); cached per file version."""
    text = Path(path).read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest(), _imports(ast.parse(text, filename=path))


def _imports(tree: ast.AST) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """Every import statement in the tree, anywhere (module level, functions, TYPE_CHECKING blocks)."""
    found: list[tuple[str, tuple[str, ...], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", tuple(a.name for a in node.names), node.level))
    return tuple(found)


def _module_file(module_name: str) -> tuple[str, tuple] | None:
    path = _origin(module_name)
    if path is None:  # a namespace package or a compiled module: nothing to read
        return None
    stat = path.stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


def _imported(module_name: str, imports: Iterable[tuple[str, tuple[str, ...], int]], prefix: str) -> set[str]:
    """The modules of `prefix` that `module_name`'s import statements name (`from a import b`: a.b when b is one)."""
    package = module_name if _is_package(module_name) else module_name.rpartition(".")[0]
    out: set[str] = set()
    for base, names, level in imports:
        if level:  # relative import
            anchor = package.rsplit(".", level - 1)[0] if level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        if not _ours(base, prefix):
            continue
        out.add(base)
        for name in names:
            if name != "*" and _exists(f"{base}.{name}"):
                out.add(f"{base}.{name}")
    return out


def _is_package(module_name: str) -> bool:
    path = _origin(module_name)
    return path is not None and path.name == "__init__.py"


def _exists(module_name: str) -> bool:
    try:
        return module_name in sys.modules or importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def _constant(value) -> str | None:
    """A stable text for a plain constant, or None when the value is not one."""
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r}, {value.flags})"
    if isinstance(value, (tuple, list, frozenset, set)):
        parts = [p for v in value if (p := _constant(v)) is not None]
        if len(parts) == len(value):
            return f"{type(value).__name__}({sorted(parts) if isinstance(value, (set, frozenset)) else parts})"
    if isinstance(value, dict):
        items = [(_constant(k), _constant(v)) for k, v in value.items()]
        if all(k is not None and v is not None for k, v in items):
            return f"dict({sorted(items)})"
    return None


def _as_function(value) -> types.FunctionType | None:
    """A plain Python function (through functools wrappers such as lru_cache), or None."""
    if not callable(value) or inspect.isclass(value):
        return None
    try:
        inner = inspect.unwrap(value)
    except ValueError:  # a __wrapped__ cycle
        return None
    return inner if inspect.isfunction(inner) else None


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


class _Walk:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.parts: dict[str, str] = {}

    def module(self, name: str) -> None:
        key = f"module:{name}"
        if key in self.parts:
            return
        parsed = _module_file(name)
        self.parts[key] = parsed[0] if parsed else "no source"
        if parsed:
            for other in sorted(_imported(name, parsed[1], self.prefix)):
                self.module(other)

    def function(self, fn: types.FunctionType) -> None:
        home = fn.__module__
        key = f"function:{home}.{fn.__qualname__}"
        if key in self.parts:
            return
        defaults = [_constant(v) or type(v).__qualname__ for v in (fn.__defaults__ or ())]
        defaults += [f"{k}={_constant(v) or type(v).__qualname__}" for k, v in (fn.__kwdefaults__ or {}).items()]
        try:
            source = inspect.getsource(fn)
            tree = ast.parse(textwrap.dedent(source))
        except (OSError, TypeError, SyntaxError):  # no source of its own (exec, a lambda mid-expression)
            self.module(home)  # its module counts whole
            return
        text = source + "\n# defaults: " + ", ".join(defaults)
        self.parts[key] = ""  # mark first: recursion
        for other in sorted(_imported(home, _imports(tree), self.prefix)):
            self.module(other)  # imported inside the function
        constants = []
        for name in sorted(_code_names(fn.__code__)):
            if name not in fn.__globals__:
                continue  # an attribute name, a builtin, or a global not defined (yet)
            value = fn.__globals__[name]
            if isinstance(value, types.ModuleType):
                if _ours(value.__name__, self.prefix):
                    self.module(value.__name__)
            elif (inner := _as_function(value)) is not None:
                if _ours(inner.__module__, self.prefix):
                    self.function(inner)
            elif inspect.isclass(value):
                if _ours(value.__module__, self.prefix):
                    self.module(value.__module__)
            elif (text_value := _constant(value)) is not None:
                constants.append(f"{name}={text_value}")
            elif _ours(home, self.prefix) and _ours(getattr(type(value), "__module__", ""), self.prefix):
                self.module(home)  # an object of ours we cannot hash by value: its module counts whole
        text += "\n# constants: " + "; ".join(constants)
        self.parts[key] = hashlib.sha256(text.encode()).hexdigest()

    def add(self, root) -> None:
        if isinstance(root, str):
            self.module(root)
        elif isinstance(root, types.ModuleType):
            self.module(root.__name__)
        elif inspect.isclass(root):
            if _ours(root.__module__, self.prefix):
                self.module(root.__module__)
        elif (fn := _as_function(root)) is not None:
            if _ours(fn.__module__, self.prefix):
                self.function(fn)
        else:
            raise TypeError(f"source_closure: cannot follow {root!r} (give a module, class or function)")


def source_closure(roots: Iterable, prefix: str = PREFIX) -> dict[str, str]:
    """{"module:<name>" | "function:<module>.<qualname>": sha256} for the roots and everything of `prefix` they use.
    Roots outside `prefix` are skipped (their package versions stand for them)."""
    walk = _Walk(prefix)
    for root in roots:
        walk.add(root)
    return dict(sorted(walk.parts.items()))
