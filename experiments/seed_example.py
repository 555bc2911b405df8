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
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

import jrnn
from experiments import common

NAME = "seed_example"
FULL = dict(hidden=(64, 32), epochs=100, batch=32, lr=1e-3, n_train=1024, n_test=512,
            length=10, checkpoint_every=320)
QUICK = dict(FULL, epochs=20)
SMOKE = dict(FULL, hidden=(8, 4), epochs=2, n_train=64, n_test=32, checkpoint_every=4)


def build(cfg: dict) -> jrnn.models.Model:
    """SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) -> Dense(1)."""
    return jrnn.models.rnn([jrnn.cells.elman(n) for n in cfg["hidden"]], output_size=1)


def main(argv=None) -> dict:
    """Trains the seed's model; writes metrics.json, report.md and PNGs under ``--out``."""
    args = common.parse_args(NAME, __doc__, argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    t0 = time.perf_counter()
    key = jax.random.key(args.seed)
    k_init, k_train, k_test, k_run = jax.random.split(key, 4)
    sine = jax.jit(jrnn.tasks.sine, static_argnums=(1, 2))
    x_train, y_train = sine(k_train, cfg["n_train"], cfg["length"])
    x_test, y_test = sine(k_test, cfg["n_test"], cfg["length"])

    model = build(cfg)
    opt = optax.adam(cfg["lr"])
    step = jrnn.train.make_train_step(model.apply, jrnn.tasks.mse, opt)
    state = jax.jit(lambda k: jrnn.train.init_state(model.init(k, 1), opt, k_run))(k_init)
    test_mse = jax.jit(lambda p: jrnn.tasks.mse(model.apply(p, x_test), y_test))
    per_epoch = cfg["n_train"] // cfg["batch"]
    total = cfg["epochs"] * per_epoch
    bar = common.progress(total, NAME)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    config["seed"] = args.seed
    result = jrnn.train.fit(
        step, state, (x_train, y_train), epochs=cfg["epochs"], batch_size=cfg["batch"],
        eval_fn=lambda p: {"mse": test_mse(p)}, eval_every=per_epoch,
        callback=lambda s, m: bar.update(), config=config,
        checkpoint_dir=common.checkpoint_dir(args.out, NAME),
        checkpoint_every=cfg["checkpoint_every"],
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
    t = np.arange(cfg["length"] + 1)
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
    common.write_metrics(args.out, metrics)
    rows = [["final train loss (last epoch)", metrics["final_train_loss_epoch_mean"]],
            ["final test MSE", final_test],
            ["baseline: predict 0", baseline_zero],
            ["baseline: repeat last value", baseline_last]]
    text = "\n".join([
        "# The seed's Keras example in jrnn",
        "",
        "`SimpleRNN(64, return_sequences=True) -> SimpleRNN(32) -> Dense(1)`, Adam (lr 1e-3), "
        f"MSE, {cfg['epochs']} epochs, batch {cfg['batch']}, input (10, 1), on next-value sine "
        f"regression ({cfg['n_train']} training / {cfg['n_test']} test windows). Mode: {mode}.",
        "",
        "```python",
        "model = jrnn.models.rnn([jrnn.cells.elman(64), jrnn.cells.elman(32)], output_size=1)",
        "```",
        "",
        common.markdown_table(["quantity", "value"], rows),
        "",
        f"![loss curve]({fig_name})",
    ] + (["", f"Training stopped: {result.reason}"] if result.diverged else []))
    common.write_report(args.out, text)
    wall = time.perf_counter() - t0
    common.write_run_info(args.out, wall_time_s=wall, mode=mode,
                          mean_step_time_s=float(np.mean(result.step_times or [0.0])))
    common.print_table(["quantity", "value"], rows, title=f"{NAME} ({mode}), {wall:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
