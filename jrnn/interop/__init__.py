"""Weight import and export at jrnn's edge: PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
state dicts, Flax linen cells and Keras 3 layers and models (and the reverse for Keras).

jrnn cells compute PyTorch's equations and store weights ``(out, in)`` as
PyTorch does, so importing is renaming plus one bias fold. For layer ``l``
PyTorch holds ``weight_ih_l{l} (G n, d)``, ``weight_hh_l{l} (G n, n)``,
``bias_ih_l{l}``, ``bias_hh_l{l} (G n,)`` with ``G = 1`` (RNN), ``4`` (LSTM,
gates i, f, g, o) or ``3`` (GRU, gates r, z, n), the same stacking as jrnn:

.. math::

   \\text{RNN/LSTM:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_h = b_{ih} + b_{hh}

   \\text{GRU:}\\quad W_{xh} = W_{ih},\\ W_{hh} = W_{hh},\\ b_{xh} = b_{ih},\\ b_{hh} = b_{hh}

(the two RNN/LSTM biases only ever appear summed; the GRU keeps them apart
because ``b_hn`` sits inside ``r * (W_hn h + b_hn)``). Flax linen stores
``Dense`` kernels ``(in, out)``, one per gate, so they are transposed and
stacked. No torch or flax import is needed for PyTorch weights: pass
``{name: tensor.detach().cpu().numpy()}``.

Keras 3 (:func:`from_keras`, :func:`to_keras`; ``pip install jrnn[keras]``,
``KERAS_BACKEND=jax``) stores kernels ``(in, out)`` with the gates side by
side along ``out``: transposed here. LSTM gates are (i, f, c, o), jrnn's
order; GRU gates are (z, r, h), reordered to jrnn's (r, z, n).

One module per framework: :mod:`jrnn.interop.torch`, :mod:`jrnn.interop.flax`,
:mod:`jrnn.interop.keras` (none imports its framework until called).
"""

from jrnn.interop.flax import from_flax_linen
from jrnn.interop.keras import from_keras, to_keras
from jrnn.interop.torch import from_torch_state_dict

__all__ = ["from_flax_linen", "from_keras", "from_torch_state_dict", "to_keras"]
