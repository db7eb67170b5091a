"""The config schema read from the source, without importing torch or Lightning.

A config section's schema is the typed ``__init__`` of the class that consumes it (``schema_of`` in
:mod:`ae_lightning.config`), and those classes import torch and Lightning: seconds before a typo's
one-line error. This module reads the same signatures from the classes' source files with
:mod:`ast` and builds stand-in classes (same names, same ``**kwargs`` chain of bases, each
``__init__`` with the real parameters, hints and defaults), so that a bad key, type or range is
refused before anything heavy is imported. One source of truth: the signatures in the model files,
``data.py`` and ``TrainerConfig``; ``tests/test_config.py`` checks that every stand-in's schema is
the real class's. Cross-field checks (``check_config``) need the real classes and run after.

Names in the hints resolve as Python would: module-level aliases (``Optimizer = Literal[...]``), names
imported from other files of the package (read the same way), and ``typing`` / :mod:`ae_lightning.hints`
(imported: they are light).
"""
from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
from pathlib import Path
from typing import Any

from ae_lightning.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
LIGHT = ("typing", "pathlib", "ae_lightning.hints", "ae_lightning.errors")  # imported, not read


def module_file(module: str) -> Path:
    """The source file of a module of this package (``ae_lightning.models.base``)."""
    parts = module.split(".")
    if parts[0] != "ae_lightning":
        raise KeyError(module)
    base = PACKAGE_DIR.joinpath(*parts[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


class _Names(dict):
    """A module's names, resolved from its source on first use (the ``locals`` of :func:`_eval`)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def __missing__(self, name: str) -> Any:
        for node in _tree(self.path).body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                value = _eval(node.value, self.path)
            elif isinstance(node, ast.ClassDef) and node.name == name:
                value = stub(self.path, name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                alias = next((a for a in node.names if (a.asname or a.name) == name), None)
                if alias is None:
                    continue
                if node.module in LIGHT:
                    value = getattr(importlib.import_module(node.module), alias.name)
                else:
                    try:
                        value = _names(module_file(node.module))[alias.name]
                    except (KeyError, OSError):
                        value = _External(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import) and any((a.asname or a.name) == name for a in node.names):
                value = _External(name)
            else:
                continue
            self[name] = value
            return value
        raise KeyError(name)


class _External:
    """A name from outside the package (``lightning``, ``torch``): only ever a base class here."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str) -> _External:
        return _External(f"{self.name}.{attr}")


@functools.lru_cache(maxsize=None)
def _names(path: Path) -> _Names:
    return _Names(path)


def _eval(node: ast.expr, path: Path) -> Any:
    return eval(compile(ast.Expression(node), str(path), "eval"), {"__builtins__": builtins}, _names(path))


def _signature(fn: ast.FunctionDef, path: Path) -> tuple[inspect.Signature, dict[str, Any]]:
    a = fn.args
    params, hints = [], {}
    positional = [*a.posonlyargs, *a.args]
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for arg, default in [*zip(positional, defaults), *zip(a.kwonlyargs, a.kw_defaults)]:
        kind = inspect.Parameter.KEYWORD_ONLY if arg in a.kwonlyargs else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(arg.arg, kind, default=inspect.Parameter.empty if default is None
                                        else _eval(default, path)))
        if arg.annotation is not None:
            hints[arg.arg] = _eval(arg.annotation, path)
    if a.vararg:
        params.insert(len(positional), inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params), hints


def _dataclass_signature(cls: ast.ClassDef, path: Path) -> tuple[inspect.Signature, dict[str, Any]]:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    hints = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = inspect.Parameter.empty if node.value is None else _eval(node.value, path)
            params.append(inspect.Parameter(node.target.id, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
            hints[node.target.id] = _eval(node.annotation, path)
    return inspect.Signature(params), hints


def _init(signature: inspect.Signature, hints: dict[str, Any], name: str):
    def __init__(self, *args, **kwargs):  # a stand-in: never called
        raise TypeError(f"{name} is a schema stand-in")

    __init__.__signature__ = signature
    __init__.__annotations__ = hints
    __init__.__qualname__ = f"{name}.__init__"
    return __init__


@functools.lru_cache(maxsize=None)
def stub(path: Path, name: str) -> type:
    """A stand-in of class ``name`` of ``path``: its project bases, and an ``__init__`` with the
    real signature and evaluated hints (a dataclass: its fields')."""
    cls = next((n for n in _tree(path).body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise KeyError(f"{path.name}: no class {name}")
    bases = tuple(b for b in (_eval(e, path) for e in cls.bases) if isinstance(b, type))
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": name, "source": (path, name)}
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    dataclass = any("dataclass" in ast.unparse(d) for d in cls.decorator_list)
    if init is not None:
        namespace["__init__"] = _init(*_signature(init, path), name)
    elif dataclass:
        namespace["__init__"] = _init(*_dataclass_signature(cls, path), name)
    return type(name, bases or (object,), namespace)


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, tuple[Path, str]]:
    """``{registry name: (file, class)}`` of the ``@register("name")`` classes of ``ae_lightning/models``."""
    out = {}
    for path in sorted((PACKAGE_DIR / "models").glob("*.py")):
        for node in _tree(path).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for d in node.decorator_list:
                if (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "register"
                        and d.args and isinstance(d.args[0], ast.Constant)):
                    out[d.args[0].value] = (path, node.name)
    return out


def model_stub(module: str) -> type:
    """The stand-in of the model class registered as ``module`` (the registry's UserError else)."""
    names = registry()
    if module not in names:
        raise UserError(f"unknown module {module!r}: registered modules are {', '.join(sorted(names))}")
    return stub(*names[module])


def class_stub(module: str, name: str) -> type:
    """The stand-in of class ``name`` of the package module ``module`` (``ae_lightning.data``)."""
    return stub(module_file(module), name)
