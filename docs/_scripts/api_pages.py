"""mkdocs hook: write the API reference pages at build time from ``__all__`` (see api_plan.py),
and put them in the nav under "API reference", so the reference follows the code when modules
move. Nothing is written to disk: the pages are generated files of the build."""

from __future__ import annotations

import os
import sys

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

sys.path.insert(0, os.path.dirname(__file__))

import api_plan  # noqa: E402

_PAGES: list[api_plan.Page] = []
NAV_TITLE = "API reference"


def _render(page: api_plan.Page) -> str:
    lines = [f"# `{page.title}`", ""]
    if page.slug == "api/index":
        lines += [
            "The reference is generated from the code at build time: every name in `jrnn.__all__`",
            "and in each public submodule's `__all__`, rendered from its docstring. A name that a",
            "package re-exports is documented once, under the package. `jrnn.__version__` is the",
            "package version (also `importlib.metadata.version(\"jrnn\")`).",
            "",
        ]
    for section in page.sections:
        top = section.module == page.title
        if not top:
            lines += [f"## `{section.module}`", ""]
        lines += [
            f"::: {section.module}",
            "    options:",
            "      members: false",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "",
        ]
        if section.entries:
            lines += ["| name | kind |", "|---|---|"]
            for e in section.entries:
                lines.append(f"| [`{e.name}`](#{e.identifier}) | {e.kind} |")
            lines.append("")
        for e in section.entries:
            lines += [
                f"::: {e.identifier}",
                "    options:",
                f'      heading: "{e.public}"',
                f'      toc_label: "{e.name}"',
                f"      heading_level: {2 if top else 3}",
                "",
            ]
    return "\n".join(lines)


def on_config(config, **kwargs):
    pages, problems = api_plan.plan()
    if problems:
        raise PluginError("API reference: " + "; ".join(problems))
    _PAGES[:] = pages
    entries = [{p.title: p.slug + ".md"} for p in pages]
    nav = config.nav or []
    for item in nav:
        if isinstance(item, dict) and NAV_TITLE in item:
            item[NAV_TITLE] = entries
            break
    else:
        nav.append({NAV_TITLE: entries})
    config.nav = nav
    return config


def on_files(files, config, **kwargs):
    for page in _PAGES:
        files.append(File.generated(config, page.slug + ".md", content=_render(page)))
    return files
