"""Weight import and export at jrnn's edge: PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
state dicts, Flax linen cells and Keras 3 layers and models (and the reverse for Keras).

jrnn cells compute PyTorch's equations and store weights ``(out, in)`` as PyTorch does, so
importing is renaming plus one bias fold; Flax linen and Keras 3 store kernels ``(in, out)``,
transposed here. One module per framework, each with its layout and gate order:
:mod:`jrnn.interop.torch` (:func:`from_torch_state_dict`), :mod:`jrnn.interop.flax`
(:func:`from_flax_linen`) and :mod:`jrnn.interop.keras` (:func:`from_keras`,
:func:`to_keras`). None imports its framework until called.
"""

from jrnn.interop.flax import from_flax_linen
from jrnn.interop.keras import from_keras, to_keras
from jrnn.interop.torch import from_torch_state_dict

__all__ = ["from_flax_linen", "from_keras", "from_torch_state_dict", "to_keras"]
