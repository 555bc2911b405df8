"""The seed article's Keras example, in jrnn, on next-value sine regression.

The article's program::

    model = Sequential()
    model.add(SimpleRNN(64, input_shape=(10, 1), return_sequences=True))
    model.add(SimpleRNN(32))
    model.add(Dense(1))
    model.compile(optimizer='adam', loss='mean_squared_error')
    model.fit(X_train, y_train, epochs=100, batch_size=32)

is here ``jrnn.models.rnn([jrnn.cells.elman(64), jrnn.cells.elman(32)], 1)``
(Keras' initialisers: Glorot-uniform input weights, orthogonal recurrent
weights, zero biases), ``optax.adam(1e-3)`` (Keras' default learning rate),
MSE, 100 epochs of batches of 32 over a fixed training set, shuffled every
epoch. The article leaves ``X_train`` unspecified; we use
:func:`jrnn.tasks.sine`: windows of 10 samples of a sine wave with random phase
and frequency, and the next sample as the target.

Writes the training-loss and gradient-norm curves, the held-out MSE against
two baselines (predict 0; repeat the last value), and a few predictions.

``--keras`` also trains the article's program in Keras 3 itself (JAX backend,
``pip install jrnn[keras]``) on the same data, imports the trained weights with
:func:`jrnn.interop.from_keras` (checking that jrnn's outputs equal Keras'),
and sets jrnn's diagnostics of the Keras-trained model next to those of the
jrnn-trained one: gradient propagation ``log ||d s_T / d s_0||``, singular
values of the step Jacobians, the leading Lyapunov exponents on long sine
trajectories, and unit health (saturated / dead units per layer). Without
Keras, ``--keras`` says how to install it and the jrnn part runs alone.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
import optax

import jrnn
from experiments import common

NAME = "seed_example"


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """What ``--keras`` measures on both trained models."""

    windows: int = 64
    """test windows for propagation, Jacobians and unit health"""
    lyap_batch: int = 4
    """long sine trajectories for the Lyapunov exponents"""
    lyap_length: int = 400
    """steps of each trajectory"""
    lyap_warmup: int = 100
    """warm-up steps before the Lyapunov average"""
    lyap_k: int = 8
    """leading exponents measured"""


@dataclasses.dataclass(frozen=True)
class Config:
    """The article's program, its data and training budget."""

    hidden: tuple[int, ...] = (64, 32)
    """SimpleRNN widths, one layer each"""
    epochs: int = 100
    """epochs over the training set"""
    batch: int = 32
    """batch size"""
    lr: float = 1e-3
    """Adam learning rate (Keras' default)"""
    n_train: int = 1024
    """training windows"""
    n_test: int = 512
    """test windows"""
    length: int = 10
    """window length"""
    checkpoint_every: int = 320
    """steps between checkpoints"""
    keras: bool = False
    """also train it in Keras 3 (KERAS_BACKEND=jax), import it and compare both models"""
    diag: Diagnostics = Diagnostics()
    """the diagnostics of --keras"""

    def measured(self) -> dict:
        """``metrics.json``'s ``config``: the program, data and budget (not --keras)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if f.name not in ("keras", "diag")}


PRESETS = {
    "smoke": Config(hidden=(8, 4), epochs=2, n_train=64, n_test=32, checkpoint_every=4,
                    diag=Diagnostics(windows=8, lyap_batch=2, lyap_length=40, lyap_warmup=10,
                                     lyap_k=4)),
    "quick": Config(epochs=20),
    "full": Config(),
}
DEFAULT_PRESET = "full"
KERAS_MISSING = (
    "--keras needs Keras 3 on the JAX backend (no TensorFlow): pip install 'jrnn[keras]' "
    "(or pip install keras) and run with KERAS_BACKEND=jax. Running the jrnn part only."
)


def build(cfg: Config) -> jrnn.models.Model:
    """SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) -> Dense(1)."""
    return jrnn.models.rnn([jrnn.cells.elman(n) for n in cfg.hidden], output_size=1)


def load_keras():
    """``(keras, None)`` for Keras 3 on the JAX backend, else ``(None, reason)``."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None, KERAS_MISSING
    if not keras.__version__.startswith("3") or keras.backend.backend() != "jax":
        return None, (f"--keras: found keras {keras.__version__} on the "
                      f"{keras.backend.backend()!r} backend; " + KERAS_MISSING)
    return keras, None


def train_keras(keras, cfg: Config, seed: int, x_train, y_train, x_test, y_test):
    """The article's program in Keras 3: returns ``(model, epoch losses, test MSE)``."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    hidden = cfg.hidden
    layers = [L.SimpleRNN(n, return_sequences=i < len(hidden) - 1) for i, n in enumerate(hidden)]
    with jax.numpy_rank_promotion("allow"):  # Keras' own code broadcasts
        km = keras.Sequential([keras.Input((cfg.length, 1))] + layers + [L.Dense(1)])
        km.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss="mean_squared_error")
        hist = km.fit(np.asarray(x_train), np.asarray(y_train), epochs=cfg.epochs,
                      batch_size=cfg.batch, shuffle=True, verbose=0)
        test_mse = float(km.evaluate(np.asarray(x_test), np.asarray(y_test), verbose=0))
    return km, [float(v) for v in hist.history["loss"]], test_mse


def diagnostics(cfg: Config, xs, xs_long, dcfg: Diagnostics):
    """A jitted ``params -> dict`` of jrnn's diagnostics of a seed model (``build(cfg)``).

    One compiled program serves every model of the same shape (jrnn- and Keras-trained).
    """
    layers = [jrnn.cells.elman(n) for n in cfg.hidden]
    cell = jrnn.stack(layers)
    D = jrnn.diagnostics
    T = xs.shape[-2]

    @jax.jit
    def arrays(params):
        p = params["cell"]
        log_norm0, sv, exps, bounds = common.one_after_another(  # LAPACK in turn (jrnn.host)
            p,
            lambda q: D.propagation(cell, q, xs).log_spectral_norm[:, 0],  # (B,)
            lambda q: D.singular_values(D.step_jacobians(cell, q, xs)),  # (B, T, S)
            lambda q: D.lyapunov_spectrum(cell, q, xs_long, k=dcfg.lyap_k,
                                          warmup=dcfg.lyap_warmup).exponents,  # (B, k)
            lambda q: [D.pascanu_bound(c, ql).bound for c, ql in zip(layers, q)],
        )
        out = {"log_norm0": log_norm0, "sv": sv, "exps": exps}
        inputs = xs
        for l, (c, pl) in enumerate(zip(layers, p)):
            out[f"health{l}"] = D.unit_health(c, pl, inputs)
            out[f"pascanu{l}"] = bounds[l]
            inputs = jrnn.unroll(c, pl, inputs)[1]
        return out

    def summary(params) -> dict:
        a = jax.tree.map(lambda v: np.asarray(v, np.float64), arrays(params))
        log_norm0, sv, exps = a["log_norm0"], a["sv"], a["exps"]
        out = {
            "log_dsT_ds0_spectral_mean": float(log_norm0.mean()),
            "log_dsT_ds0_per_step": float(log_norm0.mean() / T),
            "step_sigma_max_mean": float(sv[..., 0].mean()),
            "step_sigma_min_mean": float(sv[..., -1].mean()),
            "lyapunov_exponents_mean": exps.mean(axis=0).tolist(),
            "lyapunov_exponents_stderr": (exps.std(axis=0, ddof=1) / np.sqrt(len(exps))).tolist()
            if len(exps) > 1 else None,
            "lyapunov_max": float(exps[:, 0].mean()),
        }
        for l in range(len(layers)):
            h = a[f"health{l}"]
            out[f"layer{l + 1}_saturated_fraction"] = float(h.saturated_fraction)
            out[f"layer{l + 1}_dead_fraction"] = (  # None: no dead zone (tanh)
                float(h.dead_fraction) if bool(h.dead_applicable) else None)
            out[f"layer{l + 1}_pascanu_bound"] = float(a[f"pascanu{l}"])
        return out

    return summary


def keras_comparison(cfg, seed, jrnn_params, data, dcfg, jrnn_test_mse):
    """Trains the program in Keras, imports it, diagnoses both models: ``(metrics, report)``."""
    keras, reason = load_keras()
    if keras is None:
        print(reason)
        return {"skipped": reason}, ["", "## Keras 3", "", reason]
    x_train, y_train, x_test, y_test = data
    t0 = time.perf_counter()
    km, k_loss, k_test = train_keras(keras, cfg, seed, x_train, y_train, x_test, y_test)
    k_wall = time.perf_counter() - t0
    model, params = jrnn.interop.from_keras(km)
    with jax.numpy_rank_promotion("allow"):
        k_out = np.asarray(km.predict(np.asarray(x_test), verbose=0))
    j_out = np.asarray(model.apply(params, x_test))
    max_diff = float(np.max(np.abs(k_out - j_out)))
    key = jax.random.key(seed + 1)
    k_long = jax.random.fold_in(key, 1)
    xs = x_test[: dcfg.windows]
    xs_long, _ = jrnn.tasks.sine(k_long, dcfg.lyap_batch, dcfg.lyap_length)
    diagnose = diagnostics(cfg, xs, xs_long, dcfg)
    ours, theirs = diagnose(jrnn_params), diagnose(params)
    metrics = {
        "keras_version": keras.__version__,
        "keras_train_wall_s": k_wall,
        "keras_epoch_train_loss": k_loss,
        "keras_final_test_mse": k_test,
        "jrnn_final_test_mse": jrnn_test_mse,
        "import_max_abs_output_diff": max_diff,
        "diagnostics_jrnn_trained": ours,
        "diagnostics_keras_trained": theirs,
        "diagnostics_config": dataclasses.asdict(dcfg),
    }
    names = [
        ("test MSE", None),
        ("log ‖d s_T / d s_0‖₂ (mean over windows)", "log_dsT_ds0_spectral_mean"),
        ("  per step", "log_dsT_ds0_per_step"),
        ("step Jacobian sigma_max (mean)", "step_sigma_max_mean"),
        ("step Jacobian sigma_min (mean)", "step_sigma_min_mean"),
        ("largest Lyapunov exponent (nats/step, ± s.e.)", "lyapunov_max"),
    ] + [(f"layer {l + 1} {q}", f"layer{l + 1}_{k}") for l in range(len(cfg.hidden))
         for q, k in (("saturated fraction", "saturated_fraction"),
                      ("dead fraction", "dead_fraction"),
                      ("Pascanu bound", "pascanu_bound"))]
    def cell(d, key):
        if key == "lyapunov_max" and d["lyapunov_exponents_stderr"] is not None:
            return f"{d[key]:.4f} ± {d['lyapunov_exponents_stderr'][0]:.4f}"
        return "n/a" if d[key] is None else d[key]

    rows = [[label, jrnn_test_mse, k_test] if k is None else [label, cell(ours, k), cell(theirs, k)]
            for label, k in names]
    k = dcfg.lyap_k
    rows.append([f"top {k} Lyapunov exponents",
                 " ".join(f"{v:.3f}" for v in ours["lyapunov_exponents_mean"]),
                 " ".join(f"{v:.3f}" for v in theirs["lyapunov_exponents_mean"])])
    common.print_table(["diagnostic", "trained in jrnn", "trained in Keras"], rows,
                       title=f"keras {keras.__version__}: outputs equal to {max_diff:.1e}")
    text = [
        "", "## The same program trained in Keras 3", "",
        f"Keras {keras.__version__} (JAX backend), same data, Adam, MSE, "
        f"{cfg.epochs} epochs; weights imported with `jrnn.interop.from_keras` "
        f"(max |jrnn - Keras| output difference on the test windows: {max_diff:.1e}). "
        f"Diagnostics on {xs.shape[0]} test windows (T={xs.shape[1]}); Lyapunov exponents "
        f"on {dcfg.lyap_batch} sine trajectories of {dcfg.lyap_length} steps "
        f"({dcfg.lyap_warmup} warm-up), state = both layers' hidden units.", "",
        common.table(["diagnostic", "trained in jrnn", "trained in Keras"], rows),
    ]
    return metrics, text


def main(argv=None) -> dict:
    """Trains the seed's model; writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse(NAME, __doc__, PRESETS, DEFAULT_PRESET, argv)
    cfg, mode = args.config, args.preset
    t0 = time.perf_counter()
    key = jax.random.key(args.seed)
    k_init, k_train, k_test, k_run = jax.random.split(key, 4)
    sine = jax.jit(jrnn.tasks.sine, static_argnums=(1, 2))
    x_train, y_train = sine(k_train, cfg.n_train, cfg.length)
    x_test, y_test = sine(k_test, cfg.n_test, cfg.length)

    model = build(cfg)
    opt = optax.adam(cfg.lr)
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt)
    state = jax.jit(lambda k: jrnn.train.init_state(model.init(k, 1), opt, k_run))(k_init)
    test_mse = jax.jit(lambda p: jrnn.tasks.mse(model.apply(p, x_test), y_test))
    per_epoch = cfg.n_train // cfg.batch
    total = cfg.epochs * per_epoch
    bar = common.progress(total, NAME)
    config = cfg.measured()
    config["seed"] = args.seed
    result = jrnn.train.fit(
        step, state, (x_train, y_train), epochs=cfg.epochs, batch_size=cfg.batch,
        eval_fn=lambda p: {"mse": test_mse(p)}, eval_every=per_epoch,
        callback=lambda s, m: bar.update(), config=config,
        checkpoint_dir=common.checkpoint_dir(args.out, NAME),
        checkpoint_every=cfg.checkpoint_every,
    )
    bar.close()
    if result.diverged:
        print(result.reason)

    loss = np.asarray(result.history["loss"], np.float64)
    gnorm = np.asarray(result.history["grad_norm"], np.float64)
    n_ep = len(loss) // per_epoch
    epoch_loss = loss[: n_ep * per_epoch].reshape(n_ep, per_epoch).mean(axis=1)
    epoch_gnorm = gnorm[: n_ep * per_epoch].reshape(n_ep, per_epoch).mean(axis=1)
    test_curve = np.asarray(result.eval_history["mse"], np.float64)
    y_np = np.asarray(y_test, np.float64)
    baseline_zero = float(np.mean(y_np**2))
    baseline_last = float(np.mean((y_np[:, 0] - np.asarray(x_test)[:, -1, 0]) ** 2))
    final_test = float(test_curve[-1])
    preds = np.asarray(model.apply(result.state.params, x_test[:4]))

    plt = common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    ax = axes[0]
    ax.plot(np.arange(1, n_ep + 1), epoch_loss, label="train (epoch mean)")
    ax.plot(np.asarray(result.eval_history["step"]) / per_epoch, test_curve, label="test")
    ax.axhline(baseline_zero, color="k", ls="--", lw=1, label="predict 0")
    ax.axhline(baseline_last, color="gray", ls=":", lw=1, label="repeat last value")
    ax.set(yscale="log", xlabel="epoch", ylabel="MSE", title="loss")
    ax.legend(fontsize=7)
    axes[1].plot(np.arange(1, n_ep + 1), epoch_gnorm)
    axes[1].set(yscale="log", xlabel="epoch", ylabel="||dL/dθ|| (epoch mean)",
                title="gradient norm")
    ax = axes[2]
    t = np.arange(cfg.length + 1)
    for i in range(preds.shape[0]):
        line, = ax.plot(t[:-1], np.asarray(x_test[i, :, 0]), "o-", ms=3)
        ax.plot([t[-1]], [float(y_test[i, 0])], "o", color=line.get_color())
        ax.plot([t[-1]], [float(preds[i, 0])], "x", ms=9, color=line.get_color())
    ax.set(xlabel="step", title="test windows: target (o), prediction (x)")
    fig_name = common.save_figure(fig, args.out, "loss_curve")

    metrics = {
        "mode": mode, "seed": args.seed,
        "config": config,
        "steps": int(len(loss)),
        "diverged": bool(result.diverged),
        "final_train_loss_epoch_mean": float(epoch_loss[-1]) if n_ep else None,
        "final_test_mse": final_test,
        "baseline_predict_zero": baseline_zero,
        "baseline_repeat_last": baseline_last,
        "test_over_repeat_last": final_test / baseline_last,
        "epoch_train_loss": epoch_loss.tolist(),
        "epoch_grad_norm": epoch_gnorm.tolist(),
        "test_mse": test_curve.tolist(),
    }
    keras_text = []
    if cfg.keras:
        keras_metrics, keras_text = keras_comparison(
            cfg, args.seed, result.state.params, (x_train, y_train, x_test, y_test),
            cfg.diag, final_test)
        metrics["keras"] = keras_metrics
    common.write_metrics(args.out, metrics)
    rows = [["final train loss (last epoch)", metrics["final_train_loss_epoch_mean"]],
            ["final test MSE", final_test],
            ["baseline: predict 0", baseline_zero],
            ["baseline: repeat last value", baseline_last]]
    text = "\n".join([
        "# The seed's Keras example in jrnn",
        "",
        "`SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) -> Dense(1)`, Adam (lr 1e-3), "
        f"MSE, {cfg.epochs} epochs, batch {cfg.batch}, input (10, 1), on next-value sine "
        f"regression ({cfg.n_train} training / {cfg.n_test} test windows). Mode: {mode}.",
        "",
        "```python",
        "model = jrnn.models.rnn([jrnn.cells.elman(64), jrnn.cells.elman(32)], output_size=1)",
        "```",
        "",
        common.table(["quantity", "value"], rows),
        "",
        f"![loss curve]({fig_name})",
    ] + (["", f"Training stopped: {result.reason}"] if result.diverged else []) + keras_text)
    common.write_report(args.out, text)
    wall = time.perf_counter() - t0
    common.write_run_info(args, wall_time_s=wall, mode=mode,
                          mean_step_time_s=float(np.mean(result.step_times or [0.0])))
    common.print_table(["quantity", "value"], rows, title=f"{NAME} ({mode}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
