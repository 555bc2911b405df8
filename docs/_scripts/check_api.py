"""Coverage check of the API reference (run by .ci/docs before and after ``mkdocs build``).

Before the build (no argument): imports jrnn, walks ``jrnn.__all__`` and every public
submodule's ``__all__`` and fails, naming the page and the name, when a public name is not on
any API page, when a public module has no ``__all__``, or when a public name has no docstring
(as griffe, which renders the pages, reads it: a NamedTuple's generated ``Foo(a, b)`` or a
constant without a ``#:`` comment or a docstring below it counts as none).

After the build (``--site DIR``): fails when a documented name has no anchor in the built page,
i.e. mkdocstrings did not render it.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import api_plan  # noqa: E402


def _griffe_package():
    import griffe
    from griffe_rst import RstDocstrings

    return griffe.load(
        api_plan.PACKAGE,
        # griffe reads the sources of the jrnn that was imported
        search_paths=[os.path.dirname(os.path.dirname(api_plan.public_modules()["jrnn"].__file__))],
        extensions=griffe.load_extensions(RstDocstrings),
        resolve_aliases=True,
        resolve_external=False,
    )


def check_source(pages) -> list[str]:
    failures = []
    covered = api_plan.documented(pages)
    for mod_name, module in api_plan.public_modules().items():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if name in api_plan.DUNDERS or obj is None or api_plan.inspect.ismodule(obj):
                continue
            if (id(obj), name) not in covered:
                failures.append(f"{mod_name}.{name}: in __all__ but on no API page")
    package = _griffe_package()
    for page in pages:
        for section in page.sections:
            for entry in section.entries:
                where = f"{page.slug}.md: {entry.public}"
                try:
                    obj = package[entry.identifier.split(".", 1)[1]]
                except (KeyError, Exception) as err:  # noqa: BLE001 - report any lookup failure
                    failures.append(f"{where}: griffe cannot find {entry.identifier} ({err!r})")
                    continue
                if obj.is_alias:
                    obj = obj.final_target
                if obj.is_module:
                    failures.append(f"{where}: {entry.identifier} is a module to griffe "
                                    "(a submodule shadows the name)")
                    continue
                doc = obj.docstring.value.strip() if obj.docstring is not None else ""
                if not doc:
                    failures.append(f"{where}: no docstring ({entry.kind} {entry.identifier}; "
                                    "for a constant, a '#:' comment above it or a string below)")
    return failures


def check_site(pages, site: str) -> list[str]:
    failures = []
    for page in pages:
        rel = "api/index.html" if page.slug == "api/index" else page.slug + "/index.html"
        path = os.path.join(site, rel)
        if not os.path.exists(path):
            failures.append(f"{page.slug}.md: not built ({path} missing)")
            continue
        text = open(path, encoding="utf-8").read()
        for section in page.sections:
            for entry in section.entries:
                if f'id="{entry.identifier}"' not in text:
                    failures.append(f"{page.slug}.md: {entry.public} not rendered "
                                    f"(no anchor {entry.identifier})")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", help="check the built site in DIR instead of the sources")
    args = parser.parse_args(argv)
    pages, problems = api_plan.plan()
    failures = list(problems)
    failures += check_site(pages, args.site) if args.site else check_source(pages)
    names = sum(len(s.entries) for p in pages for s in p.sections)
    if failures:
        print(f"API coverage check failed ({len(failures)} problems):", file=sys.stderr)
        for line in failures:
            print("  " + line, file=sys.stderr)
        return 1
    what = "rendered in " + args.site if args.site else "with docstrings"
    print(f"API coverage: {names} public names on {len(pages)} pages, all {what}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
