"""Griffe extension: read jrnn's reStructuredText-flavoured Google docstrings as Markdown.

jrnn's docstrings are Google style (``Args:``, ``Returns:``) with three rst constructs that
Markdown would misread:

- ``.. math::`` followed by an indented block -> a ``$$ ... $$`` block (pymdownx.arithmatex);
  ``:math:`x``` -> ``$x$``;
- a paragraph ending in ``::`` followed by an indented block (``Example::``) -> the paragraph
  with one ``:`` and the block fenced as ``pycon`` (doctest) or ``python``;
- cross-reference roles (``:func:`name```, ``:class:``, ...) -> inline code.

A bare ``>>>`` run that is not indented under ``::`` is fenced as well (Markdown would read
``>>>`` as nested block quotes).

Module-level data documented Sphinx-style with ``#:`` comments above the assignment get those
comments as their docstring, so constants in ``__all__`` render with their explanation.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|obj|exc|const|py:\w+):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
    """The indented block after line ``start - 1`` (blank lines inside kept); returns end."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    body_start = i
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
        i += 1
    end = i
    while end > body_start and not lines[end - 1].strip():
        end -= 1
    body = lines[body_start:end]
    if not body:
        return [], start
    cut = min(_indent(x) for x in body if x.strip())
    return [x[cut:] if x.strip() else "" for x in body], end


_SECTIONS = re.compile(r"^\s*(Args|Arguments|Parameters|Raises|Returns|Yields|Attributes):\s*$")
_ITEM = re.compile(r"^[\w*., /()\[\]|-]+?:(\s|$)")


def _fix_sections(lines: list[str]) -> list[str]:
    """Mend two slips of hand-written Google sections: an item whose name list wraps onto the
    next line (``a, b, c,`` / ``d: ...``) is joined into one line, and a continuation line
    written at the item's indentation (no ``name:``) is indented under its item."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if not _SECTIONS.match(lines[i]):
            i += 1
            continue
        base = _indent(lines[i])
        i += 1
        item = None
        in_item = False
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            line = lines[i]
            if line.strip() and item is None:
                item = _indent(line)
            if line.strip() and _indent(line) == item and not _ITEM.match(line.strip()):
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                if in_item:
                    line = " " * (item + 2) + line.strip()
                elif nxt.strip() and _indent(nxt) > item:
                    line = line.rstrip() + " " + nxt.strip()
                    i += 1
            elif line.strip() and _indent(line) == item:
                in_item = True
            out.append(line)
            i += 1
    return out


def rst_to_markdown(text: str) -> str:
    """Rewrite the rst constructs of one docstring as Markdown (see the module docstring)."""
    lines = _fix_sections(text.splitlines())
    out: list[str] = []
    i = 0
    fenced = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        pad = line[: _indent(line)]
        if stripped.startswith("```"):
            fenced = not fenced
            out.append(line)
            i += 1
            continue
        if fenced:
            out.append(line)
            i += 1
            continue
        if stripped.startswith(".. math::"):
            body, end = _block(lines, i + 1, _indent(line))
            inline = stripped[len(".. math::"):].strip()
            if inline:
                body = [inline, *body]
            out += ["", pad + "$$"] + [pad + b for b in body] + [pad + "$$", ""]
            i = end
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            body, end = _block(lines, i + 1, _indent(line))
            if body:
                head = stripped[:-2].rstrip()
                if head.rstrip(":") in ("Example", "Examples"):
                    out.append(pad + "**" + head.rstrip(":") + "**")
                elif head:
                    out.append(pad + _inline(head) + ":")
                lang = "pycon" if body[0].lstrip().startswith(">>>") else "python"
                out += ["", pad + "```" + lang] + [pad + b for b in body] + [pad + "```", ""]
                i = end
                continue
        if stripped.startswith(">>>"):
            j = i
            while j < len(lines) and lines[j].strip() and _indent(lines[j]) >= len(pad):
                j += 1
            body = [x[len(pad):] for x in lines[i:j]]
            out += ["", pad + "```pycon"] + [pad + b for b in body] + [pad + "```", ""]
            i = j
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out)


def _inline(line: str) -> str:
    line = _MATH_ROLE.sub(lambda m: "$" + m.group(1) + "$", line)
    return _ROLE.sub(lambda m: "`" + m.group(1).split(".")[-1].rstrip("()") + "`", line)


def _comment_doc(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines directly above an attribute's assignment, if any."""
    try:
        lines = obj.lines_collection[obj.filepath]
    except (KeyError, TypeError, AttributeError):  # no source available
        return None
    if not lines or obj.lineno is None or obj.lineno - 2 >= len(lines):
        return None
    i = obj.lineno - 2
    found: list[str] = []
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        found.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(found) or None


class RstDocstrings(griffe.Extension):
    """Rewrites every docstring once it is loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_alias:
            return
        if obj.docstring is None and obj.is_attribute:
            doc = _comment_doc(obj)
            if doc:
                obj.docstring = griffe.Docstring(doc, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
