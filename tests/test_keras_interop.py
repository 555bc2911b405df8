"""``jrnn.interop.from_keras`` / ``to_keras`` against Keras 3 itself (JAX backend).

Every check compares with Keras' own forward pass (and, through ``stateless_call``, its
gradients) on random non-trivial weights and biases. Skipped when Keras 3 is not installed,
except the check of the message that names the extra to install.
The number of Keras models built is kept small: each costs seconds."""

import dataclasses
import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jrnn  # noqa: E402
from jrnn import interop  # noqa: E402
from jrnn.interop import keras as keras_adapter  # noqa: E402

try:
    import keras  # noqa: E402
except ImportError:
    keras = None
if keras is not None and (int(keras.__version__.split(".")[0]) < 3
                          or keras.backend.backend() != "jax"):
    keras = None  # Keras 2, or imported earlier with another backend
requires_keras = pytest.mark.skipif(keras is None, reason="needs Keras 3 on the JAX backend")

pytestmark = pytest.mark.filterwarnings(  # Keras' get_weights under NumPy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
L = None if keras is None else keras.layers
ATOL = 1e-6  # float32


def keras_code():
    """Keras' own code broadcasts ranks; the suite otherwise runs with rank promotion raising."""
    return jax.numpy_rank_promotion("allow")


def _randomize(obj, seed):
    """Sets every weight to a random value scaled by its fan-in (biases included)."""
    rng = np.random.default_rng(seed)
    for v in obj.weights:
        fan_in = v.shape[0] if len(v.shape) == 2 else 1
        scale = 1.5 / np.sqrt(fan_in) if len(v.shape) == 2 else 0.5
        v.assign((scale * rng.normal(size=v.shape)).astype("float32"))


def _xs(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.fixture(scope="module")
def single_layers():
    """One built layer per type and option, randomized, with its Keras output."""
    specs = {
        "simple_softsign_nobias": lambda: L.SimpleRNN(
            5, activation="softsign", use_bias=False, return_sequences=True),
        "simple_relu": lambda: L.SimpleRNN(5, activation="relu", return_sequences=True),
        "lstm": lambda: L.LSTM(5, unit_forget_bias=True, return_sequences=True),
        "gru_after": lambda: L.GRU(5, return_sequences=True),
        "gru_before": lambda: L.GRU(5, reset_after=False, return_sequences=True),
        "lstm_cell_rnn": lambda: L.RNN(L.LSTMCell(5, use_bias=False), return_sequences=True),
    }
    xs = _xs((3, 7, 2))
    out = {}
    with keras_code():
        for i, (name, make) in enumerate(specs.items()):
            layer = make()
            layer.build(xs.shape)
            _randomize(layer, i)
            out[name] = (layer, np.asarray(layer(xs)))
    return xs, out


@pytest.fixture(scope="module")
def article():
    """The seed's SimpleRNN(64, return_sequences) -> SimpleRNN(32) -> Dense(1)."""
    with keras_code():
        km = keras.Sequential([keras.Input((10, 1)), L.SimpleRNN(64, return_sequences=True),
                               L.SimpleRNN(32), L.Dense(1)])
        _randomize(km, 10)
    return km


@pytest.fixture(scope="module")
def mixed():
    """LSTM -> Dropout -> GRU(reset_after=False, no bias) -> Dense(2, tanh) at every step."""
    with keras_code():
        km = keras.Sequential([keras.Input((6, 3)), L.LSTM(4, return_sequences=True),
                               L.Dropout(0.5),
                               L.GRU(3, reset_after=False, use_bias=False,
                                     return_sequences=True, recurrent_dropout=0.3),
                               L.Dense(2, activation="tanh")])
        _randomize(km, 11)
    return km


@requires_keras
@pytest.mark.parametrize("name", ["simple_softsign_nobias", "simple_relu", "lstm", "gru_after",
                                  "gru_before", "lstm_cell_rnn"])
def test_single_layer_outputs_equal_keras(single_layers, name):
    xs, layers = single_layers
    layer, want = layers[name]
    cell, params = interop.from_keras(layer)
    assert all(v.dtype == jnp.float32 for v in params.values())
    _, hs = jrnn.unroll(cell, params, jnp.asarray(xs))
    np.testing.assert_allclose(hs, want, rtol=0, atol=ATOL)
    assert np.max(np.abs(want)) > 0.1  # a non-trivial output
    # the cell alone (keras.layers.SimpleRNNCell, ...) converts the same
    cell2, params2 = interop.from_keras(layer.cell)
    assert cell2.describe() == cell.describe()
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    # to_keras inverts it: the same layer type and options, the same weights bit for bit
    back = interop.to_keras(cell, params).layers[0]
    assert back.cell.__class__ is layer.cell.__class__
    options = ("activation", "recurrent_activation", "reset_after")
    for option in options + (() if name == "lstm_cell_rnn" else ("use_bias",)):
        assert getattr(back.cell, option, None) is getattr(layer.cell, option, None) or (
            getattr(back.cell, option) == getattr(layer.cell, option)), option
    kept = layer.get_weights()
    if name == "lstm_cell_rnn":  # use_bias=False: jrnn's LSTM keeps a zero bias
        kept.append(np.zeros(20, np.float32))
    assert [w.shape for w in back.get_weights()] == [w.shape for w in kept]
    for a, b in zip(back.get_weights(), kept):
        np.testing.assert_array_equal(a, b)


@requires_keras
def test_gru_variants_map_to_their_cells(single_layers):
    _, layers = single_layers
    assert interop.from_keras(layers["gru_after"][0])[0].name == "gru"
    assert interop.from_keras(layers["gru_before"][0])[0].name == "gru_reset_before"


@requires_keras
def test_article_model_outputs_and_gradients_equal_keras(article):
    model, params = interop.from_keras(article)
    assert isinstance(model, jrnn.models.Model) and model.cell.name == "stack"
    assert not model.return_sequences
    xs, ys = _xs((8, 10, 1), 1), _xs((8, 1), 2)
    with keras_code():
        want = np.asarray(article(xs))
    assert np.std(want) > 0.1
    np.testing.assert_allclose(model.apply(params, jnp.asarray(xs)), want, rtol=0, atol=ATOL)

    # gradients: Keras' own stateless_call, differentiated by jax.grad
    tv = [v.value for v in article.trainable_variables]
    ntv = [v.value for v in article.non_trainable_variables]

    def keras_loss(tv):
        with keras_code():
            out, _ = article.stateless_call(tv, ntv, xs)
            return jnp.mean((out - ys) ** 2)

    def jrnn_loss(p):
        return jnp.mean((model.apply(p, jnp.asarray(xs)) - ys) ** 2)

    np.testing.assert_allclose(jrnn_loss(params), keras_loss(tv), rtol=1e-6)
    g_keras = jax.jit(jax.grad(keras_loss))(tv)
    g = jax.jit(jax.grad(jrnn_loss))(params)
    chex_finite = [np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g)]
    assert all(chex_finite)
    (l1, l2), r = g["cell"], g["readout"]
    # Keras' trainable order: kernel, recurrent_kernel, bias per layer, then Dense
    ours = [l1["W_xh"].T, l1["W_hh"].T, l1["b_h"], l2["W_xh"].T, l2["W_hh"].T, l2["b_h"],
            r["W_ho"].T, r["b_o"]]
    for a, b in zip(ours, g_keras, strict=True):
        scale = float(np.max(np.abs(b)))
        assert scale > 0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)


@requires_keras
def test_mixed_stack_with_sequence_readout_and_round_trip(mixed):
    model, params = interop.from_keras(mixed)
    assert model.return_sequences and model.output_activation.name == "tanh"
    assert [c.split("(")[0] for c in dict(model.cell.config)["layers"]] == [
        "lstm", "gru_reset_before"]
    xs = _xs((4, 6, 3), 3)
    with keras_code():
        want = np.asarray(mixed(xs))
    np.testing.assert_allclose(model.apply(params, jnp.asarray(xs)), want, rtol=0, atol=ATOL)
    # to_keras: the inverse gives back the same weights, hence the same function
    back = interop.to_keras(model, params,
                            layers=[jrnn.cells.lstm(4), jrnn.cells.gru(3, reset_after=False)])
    model2, params2 = interop.from_keras(back)
    assert model2.cell.describe() == model.cell.describe()
    assert model2.output_activation == model.output_activation and model2.return_sequences
    jax.tree.map(np.testing.assert_array_equal, params2, params)


@requires_keras
def test_every_mapped_activation_matches_keras_numerically():
    xs = jnp.linspace(-6.0, 6.0, 121, dtype=jnp.float32)
    for name in keras_adapter._KERAS_ACTIVATIONS:
        fn = keras.activations.get(name)
        act = keras_adapter._from_keras_activation(keras, fn, "test", "activation")
        with keras_code():
            want = np.asarray(fn(xs))
        np.testing.assert_allclose(act.fn(xs), want, rtol=1e-6, atol=1e-6, err_msg=name)
        assert keras_adapter._to_keras_activation(act, "test") in (name, "silu")


@requires_keras
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L.SimpleRNN(3, go_backwards=True), r"simple_rnn.*go_backwards"),
        (lambda: L.LSTM(3, stateful=True), r"lstm.*stateful"),
        (lambda: L.SimpleRNN(3, activation="relu6"), r"simple_rnn.*activation='relu6'"),
        (lambda: L.LSTM(3, activation="relu"), r"lstm.*activation='relu'"),
        (lambda: L.GRU(3, recurrent_activation="hard_sigmoid"),
         r"gru.*recurrent_activation='hard_sigmoid'"),
        (lambda: L.Bidirectional(L.LSTM(3)), r"Bidirectional"),
        (lambda: L.GRU(3, dtype="mixed_float16"), r"gru.*dtype_policy='mixed_float16'"),
        (lambda: L.SimpleRNN(3), r"simple_rnn.*no weights yet"),
        (lambda: keras.Sequential([L.SimpleRNN(3), L.SimpleRNN(2)]),
         r"layer 1 .*return_sequences=False"),
        (lambda: keras.Sequential([L.SimpleRNN(3, return_sequences=True, return_state=True)]),
         r"layer 0 .*return_state"),
        (lambda: keras.Sequential([L.SimpleRNN(3), L.Dense(2, activation="softmax")]),
         r"Dense.*activation='softmax'"),
        (lambda: keras.Sequential([L.SimpleRNN(3), L.Dense(2), L.Dense(1)]),
         r"layer 2 .*follows the Dense"),
        (lambda: keras.Sequential([L.Masking(), L.SimpleRNN(3)]), r"layer 0 .*Masking"),
        (lambda: keras.Sequential([L.Dense(2), L.SimpleRNN(3)]), r"Dense layer needs"),
    ],
)
def test_unsupported_layers_and_options_raise_naming_them(make, match):
    with keras_code():
        obj = make()
    with pytest.raises(ValueError, match=match):
        interop.from_keras(obj)


@requires_keras
def test_to_keras_rejects_what_keras_lacks():
    with pytest.raises(ValueError, match="residual"):
        interop.to_keras(jrnn.cells.residual(3), {})
    stacked = jrnn.models.rnn([jrnn.cells.elman(3), jrnn.cells.elman(2)], 1)
    with pytest.raises(ValueError, match="layers"):
        interop.to_keras(stacked, stacked.init(jax.random.key(0), 1))
    with pytest.raises(ValueError, match="do not match"):
        interop.to_keras(stacked, stacked.init(jax.random.key(0), 1),
                         layers=[jrnn.cells.elman(3), jrnn.cells.lstm(2)])
    with pytest.raises(ValueError, match="'sin' has no Keras equivalent"):
        cell = jrnn.cells.elman(2, "sin")
        interop.to_keras(cell, cell.init(jax.random.key(0), 1))


@requires_keras
def test_seed_example_keras_comparison_smoke(monkeypatch):
    from experiments import seed_example

    cfg = dataclasses.replace(
        seed_example.PRESETS["smoke"], hidden=(4, 3), epochs=1, n_train=32, n_test=8
    )
    x, y = jrnn.tasks.sine(jax.random.key(0), 40, 10)
    data = (x[:32], y[:32], x[32:], y[32:])
    model = seed_example.build(cfg)
    params = model.init(jax.random.key(1), 1)
    dcfg = dataclasses.replace(seed_example.PRESETS["smoke"].diag, lyap_length=20, lyap_k=2)
    # jrnn's diagnostics are tested on their own; here only that both models reach them
    seen = []

    def fake_diagnostics(cfg_, xs, xs_long, dcfg_):
        assert xs.shape == (dcfg_.windows, 10, 1) and xs_long.shape == (2, 20, 1)
        return lambda p: seen.append(p) or dict(
            {"log_dsT_ds0_spectral_mean": -1.0, "step_sigma_max_mean": 1.0,
             "lyapunov_exponents_mean": [0.0, -1.0], "lyapunov_exponents_stderr": [0.1, 0.1],
             "layer1_dead_fraction": None},
            **{k: 0.0 for k in ("log_dsT_ds0_per_step", "step_sigma_min_mean", "lyapunov_max",
                                "layer1_saturated_fraction", "layer1_pascanu_bound",
                                "layer2_saturated_fraction", "layer2_dead_fraction",
                                "layer2_pascanu_bound")})

    monkeypatch.setattr(seed_example, "diagnostics", fake_diagnostics)
    metrics, text = seed_example.keras_comparison(cfg, 0, params, data, dcfg, 0.5)
    assert seen[0] is params and set(seen[1]) == {"cell", "readout"}
    assert metrics["import_max_abs_output_diff"] < 1e-5
    assert len(metrics["keras_epoch_train_loss"]) == 1
    assert np.isfinite(metrics["keras_final_test_mse"])
    assert "trained in Keras" in "\n".join(text)


def test_missing_keras_gives_the_extra_to_install(monkeypatch):
    import sys

    from experiments import seed_example

    monkeypatch.setitem(sys.modules, "keras", None)  # import keras -> ImportError
    with pytest.raises(ImportError, match=r"pip install jrnn\[keras\]"):
        interop.from_keras(object())
    metrics, text = seed_example.keras_comparison({}, 0, None, None, {}, 0.0)
    assert "pip install 'jrnn[keras]'" in metrics["skipped"] and metrics["skipped"] in text


@requires_keras
def test_to_keras_checks_param_shapes():
    cell = jrnn.cells.elman(3)
    params = cell.init(jax.random.key(0), 2)
    bad = dict(params, W_hh=params["W_hh"][:2])
    with pytest.raises(ValueError, match="'W_hh' has shape"):  # before: Keras' own error
        interop.to_keras(cell, bad)
    with pytest.raises(ValueError, match="NoneType"):  # before: "got tuple"
        interop.to_keras(cell, None)
