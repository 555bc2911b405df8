# %% [markdown]
# # Is my RNN's gradient vanishing?

# %%
import jrnn
print(jrnn.__version__)
