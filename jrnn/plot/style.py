"""The shared look of :mod:`jrnn.plot`: family colours, units, marks for non-finite values.

Nothing here imports matplotlib at import time; :func:`pyplot` does on first
use and raises an :class:`ImportError` with the install hint when it is absent.

**Colours.** A curve's colour comes from the family of the cell or activation
named in its label (:func:`color_of`): a hue per family (blues: saturating
activations; reds and oranges: the rectifier family; greens: identity and
other activations; purples: gated cells; browns and pinks: the other remedy
cells), a distinct shade per member. Labels that name nothing known take the
Okabe-Ito colour-blind-safe palette in order. Two curves that would share a
colour (``"tanh, standard"`` and ``"tanh, critical"``) get different line styles
(:func:`styles`), so many lines can meet and still be told apart.

**Units.** Exponents and rates are natural logs per step (``nats / step``);
norms and gains on log axes are in decades (``log10``); lags and windows in steps.

**Non-finite values** are drawn, never dropped or clipped
(:func:`mark_nonfinite`): ``-inf`` (an exact zero, e.g. a dead ReLU path) as a
down triangle on the lower edge of the axes, ``+inf`` as an up triangle on the
upper edge, NaN as a cross on the lower edge, each with a legend entry that
gives the count. Their artists carry the gid :data:`NONFINITE_GID`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FAMILIES",
    "INSTALL_HINT",
    "NATS",
    "NONFINITE_GID",
    "OKABE_ITO",
    "REFERENCE_GID",
    "color_of",
    "family_of",
    "mark_nonfinite",
    "nonfinite_counts",
    "pyplot",
    "styles",
    "subplots",
]

#: How to install the optional plotting dependency.
INSTALL_HINT = 'pip install "jrnn[plot]"'

#: Unit of exponents and rates.
NATS = "nats / step"

#: gid of every artist that marks a non-finite value (tests and users can find them).
NONFINITE_GID = "jrnn-nonfinite"

#: gid of the reference line (zero exponent, unit gain) that :func:`finish` draws.
REFERENCE_GID = "jrnn-reference"

#: Okabe & Ito (2008) colour-blind-safe qualitative palette (black reserved for theory).
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")

THEORY_COLOR = "black"
UNRESOLVED_COLOR = "#9a9a9a"

# family -> (members, shades): one hue per family, one shade per member.
#: Colour families: family name -> (member names, hex shades), one hue per family.
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "saturating": (
        ("tanh", "sigmoid", "hard_tanh", "hard_sigmoid", "softsign"),
        ("#1f4e9c", "#4a90d9", "#0b2a5b", "#2fa4c7", "#7fb2e5"),
    ),
    "rectifier": (
        ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus"),
        ("#c0282d", "#ef7d1a", "#8c3b12", "#e0529c", "#b8860b", "#f2a07b", "#7d1e49", "#d9a21b"),
    ),
    "other": (
        ("identity", "sin", "linear"),
        ("#2e8b3a", "#7cc26f", "#145a24"),
    ),
    "gated": (
        ("gru", "lstm", "mgu", "min_gru", "min_lstm", "lru"),
        ("#6a3d9a", "#9c6ad1", "#3f1f6b", "#c19ee8", "#8a2be2", "#56407a"),
    ),
    "remedy": (
        ("irnn", "indrnn", "orthogonal", "exprnn", "antisymmetric", "cornn", "lem",
         "lipschitz", "residual", "leaky"),
        ("#8c564b", "#c49c94", "#5c3a2e", "#e377c2", "#a0522d", "#bc7a5a", "#6b4226",
         "#d38fb4", "#996633", "#704214"),
    ),
}

_COLOR = {m: c for members, shades in FAMILIES.values() for m, c in zip(members, shades)}
_FAMILY = {m: f for f, (members, _) in FAMILIES.items() for m in members}
_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


def pyplot():
    """``matplotlib.pyplot``, imported on first use.

    Raises:
      ImportError: matplotlib is not installed; the message gives :data:`INSTALL_HINT`.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            f"jrnn.plot draws with matplotlib, which is not installed: {INSTALL_HINT} "
            "(or pip install matplotlib)."
        ) from e
    return plt


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 4.8, height: float = 3.6,
             **kwargs):
    """``plt.subplots`` with jrnn's panel size and constrained layout; ``(fig, axes)``.

    ``axes`` is always a 2-D array (``squeeze=False``) unless ``squeeze=True`` is passed.
    """
    plt = pyplot()
    kwargs.setdefault("squeeze", False)
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)


def new_axes(ax, argument: str = "ax"):
    """``ax`` checked to be a matplotlib Axes, or a fresh one (TypeError naming ``argument``)."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 4.0), layout="constrained")
        return ax
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(
            f"{argument} must be a matplotlib Axes (e.g. from plt.subplots()) or None, got "
            f"{type(ax).__name__}."
        )
    return ax


def _tokens(label: str) -> list[str]:
    out, word = [], []
    for ch in str(label).lower():
        if ch.isalnum() or ch == "_":
            word.append(ch)
        else:
            out.append("".join(word))
            word = []
    out.append("".join(word))
    return [w for w in out if w]


def family_of(label: str) -> str | None:
    """Family of the first known cell or activation name in ``label`` (None if none).

    Example::

        >>> from jrnn.plot import style
        >>> style.family_of("elman-relu, critical"), style.family_of("lstm"), style.family_of("x")
        ('rectifier', 'gated', None)
    """
    for w in _tokens(label):
        if w in _FAMILY:
            return _FAMILY[w]
    return None


def color_of(label: str) -> str | None:
    """Fixed colour of the first known cell or activation name in ``label`` (None if none)."""
    for w in _tokens(label):
        if w in _COLOR:
            return _COLOR[w]
    return None


def styles(labels: Sequence[Any]) -> list[dict[str, Any]]:
    """One ``{"color", "linestyle", "marker"}`` per label: family colours, distinct pairs.

    Known names get their family colour (:func:`color_of`), others the
    Okabe-Ito palette in order; when two labels land on the same colour the
    later one gets the next line style and marker, so no two entries look alike.

    Example::

        >>> from jrnn.plot import style
        >>> a, b, c = style.styles(["tanh, standard", "tanh, critical", "relu"])
        >>> a["color"] == b["color"] != c["color"], a["linestyle"] != b["linestyle"]
        (True, True)
    """
    used: dict[str, int] = {}
    free = [c for c in OKABE_ITO]
    out = []
    for i, label in enumerate(labels):
        color = color_of(str(label)) if label is not None else None
        if color is None:
            color = free.pop(0) if free else OKABE_ITO[i % len(OKABE_ITO)]
        n = used.get(color, 0)
        used[color] = n + 1
        out.append({"color": color, "linestyle": _LINESTYLES[n % len(_LINESTYLES)],
                    "marker": _MARKERS[n % len(_MARKERS)]})
    return out


def nonfinite_counts(values) -> dict[str, int]:
    """``{"-inf": n, "+inf": n, "nan": n}`` for an array of values."""
    v = np.asarray(values, dtype=float)
    return {"-inf": int(np.sum(v == -np.inf)), "+inf": int(np.sum(v == np.inf)),
            "nan": int(np.sum(np.isnan(v)))}


def describe_nonfinite(counts: Mapping[str, int], zero_means: str = "exact zero") -> str:
    """``"-inf (exact zero) x3, NaN x1"`` from :func:`nonfinite_counts` (empty if none)."""
    parts = []
    if counts.get("-inf"):
        parts.append(f"-inf ({zero_means}) x{counts['-inf']}")
    if counts.get("+inf"):
        parts.append(f"+inf x{counts['+inf']}")
    if counts.get("nan"):
        parts.append(f"NaN x{counts['nan']}")
    return ", ".join(parts)


_EDGE = {"-inf": (0.0, "v"), "+inf": (1.0, "^"), "nan": (0.0, "x")}


def mark_nonfinite(ax, x, y, *, color="black", label: str | None = None, axis: str = "y",
                   zero_means: str = "exact zero") -> dict[str, int]:
    """Marks the points whose value is not finite at the edge of ``ax``; returns the counts.

    ``axis="y"``: the value is ``y``, drawn at position ``x`` on the lower
    (``-inf``, NaN) or upper (``+inf``) edge of the axes, whatever the limits
    become. ``axis="x"``: the value is ``x``, drawn on the left or right edge
    at height ``y``. Each kind present gets one artist (gid
    :data:`NONFINITE_GID`) with a legend entry ``"<label>: -inf (exact zero) x3"``.
    Marks are not clipped (``clip_on=False``).
    """
    vals = np.asarray(y if axis == "y" else x, dtype=float).ravel()
    pos = np.asarray(x if axis == "y" else y, dtype=float).ravel()
    pos = np.broadcast_to(pos, vals.shape)
    counts = nonfinite_counts(vals)
    transform = ax.get_xaxis_transform() if axis == "y" else ax.get_yaxis_transform()
    for kind, (edge, marker) in _EDGE.items():
        sel = (vals == -np.inf) if kind == "-inf" else (
            (vals == np.inf) if kind == "+inf" else np.isnan(vals))
        if not sel.any():
            continue
        text = describe_nonfinite({kind: int(sel.sum())}, zero_means)
        name = f"{label}: {text}" if label else text
        at = np.full(int(sel.sum()), edge)
        xy = (pos[sel], at) if axis == "y" else (at, pos[sel])
        (line,) = ax.plot(*xy, linestyle="none", marker=marker, markersize=7, color=color,
                          markeredgewidth=1.5, transform=transform, clip_on=False,
                          label=name, zorder=5)
        line.set_gid(NONFINITE_GID)
    return counts


def note(ax, text: str, *, where: str = "upper left") -> None:
    """A small boxed text in a corner of ``ax`` (gid :data:`NONFINITE_GID` when it counts)."""
    x, ha = (0.02, "left") if "left" in where else (0.98, "right")
    y, va = (0.98, "top") if "upper" in where else (0.02, "bottom")
    t = ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85,
                      "edgecolor": "0.7"})
    t.set_gid(NONFINITE_GID)


def finish(ax, *, xlabel: str, ylabel: str, title: str | None = None, legend: bool = True,
           zero: float | None = None) -> None:
    """Labels, a light grid, an optional reference line and a legend that does not hide data."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if zero is not None:
        ax.axhline(zero, color="black", linewidth=0.7, zorder=1).set_gid(REFERENCE_GID)
    ax.grid(True, alpha=0.25, linewidth=0.6)
    if legend and ax.get_legend_handles_labels()[0]:
        n = len(ax.get_legend_handles_labels()[0])
        ax.legend(fontsize=7 if n > 6 else 8, ncol=2 if n > 8 else 1, loc="best",
                  framealpha=0.85)


def fmt(value: float, digits: int = 3) -> str:
    """A number for a legend: ``-inf`` and NaN spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"
