"""What the format adapters of :mod:`jrnn.interop` share."""


def shape_str(shape) -> str:
    """``(3,)``, ``(2, 4)``: a shape as Python prints a tuple, for messages."""
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")
