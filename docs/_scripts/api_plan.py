"""What the API reference documents, derived from the code: ``jrnn.__all__`` and every public
submodule's ``__all__``.

One page per public top-level module ``jrnn.X`` (plus ``jrnn`` itself for the top-level names).
A page has one section per module of that subtree that exports something not already documented
higher up: a name re-exported by a package (``jrnn.cells.lstm`` re-exported as
``jrnn.cells.lstm``'s function in ``jrnn.cells``) is documented once, on the package's section.
Each object is rendered from its defining module (``obj.__module__`` + ``__qualname__``), since
a function and a submodule of the same name (``jrnn.cells.elman``) share a dotted path.

Used by ``api_pages.py`` (the mkdocs hook that writes the pages) and ``check_api.py`` (the
coverage check), so the check and the pages cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import sys
import types

PACKAGE = "jrnn"
#: Names that are in ``__all__`` by convention and need no docstring.
DUNDERS = ("__version__",)


@dataclasses.dataclass
class Entry:
    module: str        # the public module whose __all__ exports it
    name: str          # the exported name
    identifier: str    # dotted path mkdocstrings renders (the defining module's path)
    kind: str          # "class", "function" or "data"

    @property
    def public(self) -> str:
        return f"{self.module}.{self.name}"


@dataclasses.dataclass
class Section:
    module: str
    entries: list[Entry]


@dataclasses.dataclass
class Page:
    slug: str          # docs path without .md, e.g. "api/cells"
    title: str         # nav title, e.g. "jrnn.cells"
    sections: list[Section]


def public_modules() -> dict[str, types.ModuleType]:
    """``jrnn`` and every importable submodule whose dotted path has no ``_``-prefixed part."""
    root = importlib.import_module(PACKAGE)
    found = {PACKAGE: root}
    for info in pkgutil.walk_packages(root.__path__, PACKAGE + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        found[info.name] = importlib.import_module(info.name)
    return dict(sorted(found.items(), key=lambda kv: (kv[0].count("."), kv[0])))


def _identifier(module: str, name: str, obj) -> tuple[str, str]:
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
        kind = "class" if inspect.isclass(obj) else "function"
        owner, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if owner and qual and owner.startswith(PACKAGE) and "<" not in qual:
            defining = sys.modules.get(owner)
            target = defining
            for part in qual.split("."):
                target = getattr(target, part, None)
            if target is obj:
                return f"{owner}.{qual}", kind
        return f"{module}.{name}", kind
    return f"{module}.{name}", "data"


def plan() -> tuple[list[Page], list[str]]:
    """The pages, and the problems that make a reference impossible (no ``__all__``, a name in
    ``__all__`` that the module lacks)."""
    problems: list[str] = []
    modules = public_modules()
    seen: dict[tuple[int, str], Entry] = {}
    sections: dict[str, Section] = {}
    for mod_name, module in modules.items():
        exported = getattr(module, "__all__", None)
        if exported is None:
            problems.append(f"{mod_name}: public module without __all__ (add one, or rename it "
                            f"_{mod_name.rsplit('.', 1)[-1]} if it is private)")
            continue
        entries = []
        for name in exported:
            if not hasattr(module, name):
                problems.append(f"{mod_name}.__all__ lists {name!r}, which the module lacks")
                continue
            obj = getattr(module, name)
            if inspect.ismodule(obj) or name in DUNDERS:
                continue
            key = (id(obj), name)
            if key in seen:
                continue
            identifier, kind = _identifier(mod_name, name, obj)
            entry = Entry(mod_name, name, identifier, kind)
            seen[key] = entry
            entries.append(entry)
        sections[mod_name] = Section(mod_name, entries)

    pages: dict[str, Page] = {}
    for mod_name, section in sections.items():
        parts = mod_name.split(".")
        top = ".".join(parts[:2])
        slug = "api/" + (parts[1] if len(parts) > 1 else "index")
        page = pages.setdefault(top, Page(slug, top, []))
        if section.entries or mod_name == top:
            page.sections.append(section)
    return list(pages.values()), problems


def documented(pages: list[Page]) -> dict[tuple[int, str], Entry]:
    """``(id(object), name) -> Entry`` for every object the pages render."""
    out = {}
    for page in pages:
        for section in page.sections:
            for entry in section.entries:
                obj = getattr(sys.modules[entry.module], entry.name)
                out[(id(obj), entry.name)] = entry
    return out
