"""The update metrics against plain NumPy on hand-made examples."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from warmup_jax.metrics import update as um
from warmup_jax.model import gpt
from warmup_jax.model.config import ModelConfig
from warmup_jax.optim.snr import MicroBatchStats
from warmup_jax.train.optimizer import available_optimizers


def _rotate(x: np.ndarray, theta: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` rotated by ``theta`` in the plane of ``x`` and a random orthogonal direction (same norm)."""
    u = x / np.linalg.norm(x)
    v = rng.standard_normal(x.shape)
    v -= np.sum(v * u) * u
    v /= np.linalg.norm(v)
    return np.linalg.norm(x) * (np.cos(theta) * u + np.sin(theta) * v)


def _np_angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


@pytest.mark.parametrize("theta", [1e-5, 3e-3, 0.4, 2.5])
def test_known_rotation_gives_its_angle_even_below_arccos_resolution(theta):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32))
    b = _rotate(a, theta, rng).reshape(a.shape)
    got = float(um.stable_angle(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
    np.testing.assert_allclose(got, theta, rtol=2e-3)
    # The same angle reported by update_metrics, scaled tensors included (angles ignore norms).
    metrics = um.update_metrics(
        {"w": {"kernel": jnp.asarray(a, jnp.float32)}}, {"w": {"kernel": jnp.asarray(3.0 * b, jnp.float32)}}
    )
    np.testing.assert_allclose(float(metrics["angle/w.kernel"]), theta, rtol=2e-3)
    if theta == 1e-5:  # arccos of the float32 cosine cannot see this rotation
        cos = jnp.sum(jnp.asarray(a, jnp.float32) * jnp.asarray(b, jnp.float32)) / (
            jnp.linalg.norm(jnp.asarray(a, jnp.float32)) * jnp.linalg.norm(jnp.asarray(b, jnp.float32))
        )
        assert abs(float(jnp.arccos(jnp.clip(cos, -1, 1))) - theta) > 0.5 * theta


def test_norms_and_relative_update_match_numpy():
    rng = np.random.default_rng(1)
    old = {"a": {"kernel": rng.standard_normal((5, 7))}, "ln": {"scale": rng.standard_normal(7)}}
    new = jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape), old)
    m = um.update_metrics(jax.tree.map(jnp.float32, old), jax.tree.map(jnp.float32, new))
    for path, name in ((("a", "kernel"), "a.kernel"), (("ln", "scale"), "ln.scale")):
        a, b = old[path[0]][path[1]], new[path[0]][path[1]]
        np.testing.assert_allclose(m[f"update_l2/{name}"], np.linalg.norm(b - a), rtol=1e-5)
        np.testing.assert_allclose(m[f"weight_norm/{name}"], np.linalg.norm(b), rtol=1e-5)
        np.testing.assert_allclose(m[f"relative_update/{name}"], np.linalg.norm(b - a) / np.linalg.norm(a), rtol=1e-5)
    total_delta = np.sqrt(sum(np.sum((new[k][j] - old[k][j]) ** 2) for k, j in (("a", "kernel"), ("ln", "scale"))))
    np.testing.assert_allclose(m["update_l2/global"], total_delta, rtol=1e-5)
    assert "angle/ln.scale" not in m and "angle/a.kernel" in m  # angles only for ndim >= 2


def test_neuron_axes_columns_of_kernels_rows_of_embeddings():
    """Each column of a Dense kernel (each row of an embedding) is rotated by its own angle."""
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((16, 4))  # (in, out): 4 neurons
    col_angles = np.array([0.01, 0.02, 0.05, 0.3])
    new_kernel = np.stack([_rotate(kernel[:, j], col_angles[j], rng) for j in range(4)], axis=1)
    embedding = rng.standard_normal((5, 16))  # (vocab, d): 5 neurons
    row_angles = np.array([0.1, 0.0, 0.02, 0.2, 0.04])
    new_embedding = np.stack([_rotate(embedding[i], row_angles[i], rng) for i in range(5)], axis=0)
    old = {"mlp": {"fc": {"kernel": kernel}}, "wte": {"embedding": embedding}}
    new = {"mlp": {"fc": {"kernel": new_kernel}}, "wte": {"embedding": new_embedding}}
    m = um.update_metrics(jax.tree.map(jnp.float32, old), jax.tree.map(jnp.float32, new))
    np.testing.assert_allclose(m["angle_neuron_rms/mlp.fc.kernel"], np.sqrt(np.mean(col_angles**2)), rtol=2e-3)
    np.testing.assert_allclose(m["angle_neuron_rms/wte.embedding"], np.sqrt(np.mean(row_angles**2)), rtol=2e-3)
    # The other axis convention gives a different number, so the test can tell them apart.
    rows_of_kernel = np.sqrt(np.mean([_np_angle(kernel[i], new_kernel[i]) ** 2 for i in range(16)]))
    assert abs(rows_of_kernel - np.sqrt(np.mean(col_angles**2))) > 0.01
    # Global RMS over all neurons of both matrices.
    all_angles = np.concatenate([col_angles, row_angles])
    np.testing.assert_allclose(m["angle_neuron_rms/global"], np.sqrt(np.mean(all_angles**2)), rtol=2e-3)


def test_group_and_global_angles_are_angles_of_the_concatenation():
    rng = np.random.default_rng(3)
    old = {
        "blocks": {
            str(i): {
                "attn": {"qkv": {"kernel": rng.standard_normal((8, 24))}},
                "mlp": {"fc": {"kernel": 0.3 * rng.standard_normal((8, 32))}},
            }
            for i in range(2)
        },
        "wte": {"embedding": rng.standard_normal((10, 8))},
    }
    new = jax.tree.map(lambda x: 1.1 * x + 0.05 * rng.standard_normal(x.shape), old)
    m = um.update_metrics(jax.tree.map(jnp.float32, old), jax.tree.map(jnp.float32, new))
    flat = lambda tree, keep: np.concatenate(  # noqa: E731
        [x.ravel() for p, x in um._flatten(tree) if keep(p)]
    )
    for group, keep in (("blocks.1", lambda p: p.startswith("blocks/1/")), ("global", lambda p: True)):
        np.testing.assert_allclose(m[f"angle/{group}"], _np_angle(flat(old, keep), flat(new, keep)), rtol=1e-4)
    np.testing.assert_allclose(
        m["angle/blocks.0.mlp.fc.kernel"],
        _np_angle(old["blocks"]["0"]["mlp"]["fc"]["kernel"], new["blocks"]["0"]["mlp"]["fc"]["kernel"]),
        rtol=1e-4,
    )


def test_rrc_of_known_delta_and_inputs():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 6))
    kernel, bias = rng.standard_normal((6, 3)), rng.standard_normal(3)
    delta = np.zeros((6, 3))
    delta[0, 0] = 0.5  # X dK is 0.5 * (first input feature) in the first output
    expected = np.linalg.norm(0.5 * x[:, 0]) / np.linalg.norm(x @ kernel)
    old = {"fc": {"kernel": kernel, "bias": bias}}
    new = {"fc": {"kernel": kernel + delta, "bias": bias + 1.0}}  # a bias change does not enter the RRC
    captured = {"fc": (jnp.asarray(x, jnp.float32), jnp.asarray(x @ kernel + bias, jnp.float32))}
    m = um.update_metrics(jax.tree.map(jnp.float32, old), jax.tree.map(jnp.float32, new), captured=captured)
    np.testing.assert_allclose(m["rrc/fc"], expected, rtol=1e-5)
    np.testing.assert_allclose(m["rrc/global"], expected, rtol=1e-5)
    direct = um.relative_representation_change(jnp.asarray(x), jnp.asarray(delta), kernel_CxO=jnp.asarray(kernel))
    np.testing.assert_allclose(direct, expected, rtol=1e-5)


def _micro_batch_grads(signal: np.ndarray, noise_std: float, k: int, b: int, rng) -> np.ndarray:
    """K micro-batch mean gradients of b per-sequence gradients G + N(0, noise_std^2 I)."""
    per_sequence = signal + noise_std * rng.standard_normal((k, b, signal.size))
    return per_sequence.mean(axis=1)


def test_snr_of_synthetic_gradients_with_known_signal_and_noise():
    rng = np.random.default_rng(5)
    d, k, b = 40_000, 8, 4
    signal = np.full(d, 1.0 / np.sqrt(d))  # |G|^2 = 1
    noise_std = np.sqrt(50.0 / d)  # S = trace of the covariance = 50, so phi = 1/50
    grads_k = _micro_batch_grads(signal, noise_std, k, b, rng).astype(np.float32)
    mean = grads_k.mean(axis=0)
    params = {"w": {"kernel": jnp.zeros((200, 200), jnp.float32)}}
    grads = {"w": {"kernel": jnp.asarray(mean.reshape(200, 200))}}
    stats = MicroBatchStats({"w": {"kernel": jnp.asarray(np.sum(grads_k.astype(np.float64) ** 2))}}, k, b)
    m = um.update_metrics(params, params, grads=grads, micro_batch_stats=stats)
    np.testing.assert_allclose(m["snr/w.kernel"], 1.0 / 50.0, rtol=0.1)
    np.testing.assert_allclose(m["snr/global"], 1.0 / 50.0, rtol=0.1)
    np.testing.assert_allclose(m["critical_batch/global"], 50.0, rtol=0.1)
    # Exactly the two-batch-size estimator, computed by hand.
    small, big = np.mean(np.sum(grads_k.astype(np.float64) ** 2, axis=1)), np.sum(mean.astype(np.float64) ** 2)
    noise = (small - big) / (1 / b - 1 / (k * b))
    np.testing.assert_allclose(m["snr_noise/global"], noise, rtol=1e-3)
    np.testing.assert_allclose(m["snr_signal/global"], big - noise / (k * b), rtol=1e-2)
    # One micro-batch: no estimate, no SNR metrics.
    single = um.update_metrics(params, params, grads=grads, micro_batch_stats=stats._replace(num_micro_batches=1))
    assert not any(name.startswith(("snr", "critical_batch")) for name in single)


def test_momentum_cosine_and_cancellation_match_numpy():
    rng = np.random.default_rng(6)
    g = {"a": {"kernel": rng.standard_normal((4, 3))}, "b": {"scale": rng.standard_normal(3)}}
    mom = {"a/kernel": -0.3 * g["a"]["kernel"] + 0.1 * rng.standard_normal((4, 3)), "b/scale": rng.standard_normal(3)}
    params = jax.tree.map(jnp.float32, g)
    beta, clip = 0.9, 0.5
    m = um.update_metrics(
        params,
        params,
        grads=params,
        first_moment={k: jnp.float32(v) for k, v in mom.items()},
        momentum_beta=beta,
        grad_clip=clip,
    )
    ga, ma = g["a"]["kernel"].ravel(), mom["a/kernel"].ravel()
    np.testing.assert_allclose(
        m["grad_momentum_cos/a.kernel"], ga @ ma / (np.linalg.norm(ga) * np.linalg.norm(ma)), rtol=1e-5
    )
    all_g = np.concatenate([ga, g["b"]["scale"]])
    all_m = np.concatenate([ma, mom["b/scale"]])
    factor = min(1.0, clip / np.linalg.norm(all_g))  # the momentum saw the clipped gradient
    clipped = factor * ga
    rho = (beta * ma) @ ((1 - beta) * clipped) / np.sum(((1 - beta) * clipped) ** 2)
    np.testing.assert_allclose(m["momentum_cancellation/a.kernel"], rho, rtol=1e-4)
    np.testing.assert_allclose(
        m["grad_momentum_cos/global"], all_g @ all_m / (np.linalg.norm(all_g) * np.linalg.norm(all_m)), rtol=1e-5
    )
    # No first moment yet (m = 0 at step 1): the cosine is undefined, the cancellation is 0.
    zero = um.update_metrics(params, params, grads=params, first_moment={"a/kernel": jnp.zeros((4, 3))})
    assert np.isnan(zero["grad_momentum_cos/a.kernel"]) and zero["momentum_cancellation/a.kernel"] == 0.0


@pytest.mark.parametrize("name, found", [("adamw", True), ("lion", True), ("lion_ar", True), ("sgd", False)])
def test_first_moment_is_found_in_optax_states(name, found):
    params = {
        "blocks": {"0": {"attn": {"qkv": {"kernel": jnp.ones((4, 6))}}, "ln1": {"scale": jnp.ones(4)}}},
        "wte": {"embedding": jnp.ones((10, 4))},
    }
    tx = optax.sgd(0.1) if name == "sgd" else available_optimizers()[name](learning_rate=1e-3)
    grads = jax.tree.map(lambda x: 0.5 * jnp.ones_like(x), params)
    _, state = tx.update(grads, tx.init(params), params)
    moment = um.find_first_moment(optax.chain(optax.clip_by_global_norm(1.0), tx).init(params), params)
    if not found:
        assert moment is None
        return
    assert sorted(moment) == ["blocks/0/attn/qkv/kernel", "blocks/0/ln1/scale", "wte/embedding"]
    after_one = um.find_first_moment(state, params)  # the moment really is the gradient EMA
    assert all(float(jnp.max(jnp.abs(v))) > 0 for v in after_one.values())


def test_metrics_due_is_the_same_on_host_and_device():
    kwargs = dict(interval=10, dense_interval=2, dense_until_step=6)
    host = [s for s in range(1, 31) if um.metrics_due(s, **kwargs)]
    assert host == [2, 4, 6, 10, 20, 30]
    device = [s for s in range(1, 31) if bool(jax.jit(lambda s: um.metrics_due(s, **kwargs))(jnp.int32(s)))]
    assert device == host
    assert not any(um.metrics_due(s, interval=0, dense_interval=1, dense_until_step=9) for s in range(1, 5))


def test_captured_dense_inputs_are_the_layer_inputs():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=64, use_bias=True)
    model_def, params = gpt.init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(0), (3, 8), 0, 64)
    model = model_def.merge(params)
    plain = model(tokens)
    logits, captured = gpt.forward_capturing_dense(model_def.merge(params), tokens, num_tokens=10)
    np.testing.assert_array_equal(logits, plain)
    assert len(captured) == 9 and all(x.shape[0] == 10 for x, _ in captured.values())  # 8 Dense + the tied head
    rows = gpt.token_subsample(3 * 8, 10)
    # The first block's qkv layer sees ln1(wte[tokens] + wpe).
    embedded = model.wte(tokens) + model.wpe(jnp.arange(8))[None]
    expected = model.blocks[0].ln1(embedded).reshape(-1, 16)[rows]
    x, y = captured["blocks/0/attn/qkv"]
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    layer = params["blocks"]["0"]["attn"]["qkv"]
    np.testing.assert_allclose(y, x @ layer["kernel"] + layer["bias"], rtol=1e-5, atol=1e-5)
    assert model.blocks[0].attn.qkv.capture_tokens == 0  # capturing is switched off again


def _per_layer_and_stacked(rng, num_layers=3):
    """A tree with per-layer blocks and the same values stored stacked (leading layer axis)."""

    def layer():
        return {
            "attn": {"qkv": {"kernel": rng.standard_normal((6, 9)), "bias": rng.standard_normal(9)}},
            "ln1": {"scale": rng.standard_normal(6)},
            "mlp": {"fc": {"kernel": rng.standard_normal((6, 12))}},  # a Dense layer without bias
        }

    layers = [layer() for _ in range(num_layers)]
    per_layer = {
        "blocks": {str(i): t for i, t in enumerate(layers)},
        "wte": {"embedding": rng.standard_normal((11, 6))},
    }
    stacked = {"blocks": jax.tree.map(lambda *xs: np.stack(xs), *layers), "wte": per_layer["wte"]}
    return jax.tree.map(jnp.float32, per_layer), jax.tree.map(jnp.float32, stacked)


def test_stacked_layers_are_split_back_into_per_layer_names():
    rng = np.random.default_rng(9)
    old, old_stacked = _per_layer_and_stacked(rng)
    new, new_stacked = _per_layer_and_stacked(rng)
    grads, grads_stacked = _per_layer_and_stacked(rng)
    moment, moment_stacked = _per_layer_and_stacked(rng)
    x = [jnp.asarray(rng.standard_normal((20, 6)), jnp.float32) for _ in range(3)]
    y = [x[i] @ old["blocks"][str(i)]["attn"]["qkv"]["kernel"] for i in range(3)]
    k, b = 4, 2
    # Micro-batch sums: per tensor for the per-layer tree, per layer (shape (L,)) for stacked tensors.
    sums = jax.tree.map(lambda g: 1.5 * k * jnp.sum(jnp.square(g)), grads)
    sums_stacked = {"blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *sums["blocks"].values()), "wte": sums["wte"]}
    np.testing.assert_allclose(
        um.sq_norms(grads_stacked, ("blocks",))["blocks/attn/qkv/kernel"],
        [jnp.sum(jnp.square(grads["blocks"][str(i)]["attn"]["qkv"]["kernel"])) for i in range(3)],
        rtol=1e-6,
    )

    def flat_moment(tree):
        return dict(um._flatten(tree))

    expected = um.update_metrics(
        old,
        new,
        grads=grads,
        micro_batch_stats=MicroBatchStats(sums, k, b),
        first_moment=flat_moment(moment),
        captured={f"blocks/{i}/attn/qkv": (x[i], y[i]) for i in range(3)},
    )
    got = um.update_metrics(
        old_stacked,
        new_stacked,
        grads=grads_stacked,
        micro_batch_stats=MicroBatchStats(sums_stacked, k, b),
        first_moment=flat_moment(moment_stacked),
        captured={"blocks/attn/qkv": (jnp.stack(x), jnp.stack(y))},
        stacked=("blocks",),
    )
    assert sorted(got) == sorted(expected)
    for name in (
        "update_l2/blocks.2.attn.qkv.kernel",
        "angle/blocks.1",
        "rrc/blocks.0.attn.qkv",
        "snr/blocks.2",
        "grad_momentum_cos/blocks.1.ln1.scale",
        "angle_neuron_rms/global",
    ):
        assert name in got
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)
    # Whole-stack sums cannot give per-layer SNR: refused with the reason.
    with pytest.raises(ValueError, match=r"blocks/attn/qkv/.*one sum per layer"):
        um.update_metrics(
            old_stacked,
            new_stacked,
            grads=grads_stacked,
            stacked=("blocks",),
            micro_batch_stats=MicroBatchStats(jax.tree.map(jnp.sum, sums_stacked), k, b),
        )


def test_rrc_of_a_tied_output_head():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((30, 6))
    emb_old, emb_new = rng.standard_normal((11, 6)), rng.standard_normal((11, 6))
    expected = np.linalg.norm(x @ (emb_new - emb_old).T) / np.linalg.norm(x @ emb_old.T)
    m = um.update_metrics(
        {"wte": {"embedding": jnp.float32(emb_old)}},
        {"wte": {"embedding": jnp.float32(emb_new)}},
        captured={"wte": (jnp.float32(x), None)},
    )
    np.testing.assert_allclose(m["rrc/wte"], expected, rtol=1e-5)


def test_model_captures_the_tied_head_inputs():
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)
    model_def, params = gpt.init_params(cfg, 0)
    model = model_def.merge(params)
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 32)
    logits, captured = gpt.forward_capturing_dense(model, tokens, num_tokens=16)
    x, y = captured["wte"]
    assert y is None and x.shape == (16, 16)
    # The head's inputs times the embedding give the logits of the same rows (the real ids: the
    # model may mask the logits of the padding ids).
    real = cfg.vocab_size
    np.testing.assert_allclose(
        (x @ params["wte"]["embedding"].T)[:, :real], logits.reshape(16, -1)[:, :real], atol=1e-5
    )
    assert not hasattr(model, "capture_tokens") or model.capture_tokens == 0


@pytest.mark.parametrize("rrc_tokens", [0, 8])
def test_train_step_metrics_with_and_without_rrc(rrc_tokens):
    from warmup_jax.config import MetricsConfig
    from warmup_jax.train.step import init_train_state, make_train_step

    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=32)
    model_def, params = gpt.init_params(cfg, 0)
    tx = optax.adamw(1e-3)
    step = make_train_step(model_def, tx, metrics=MetricsConfig(interval=1, rrc_tokens=rrc_tokens))
    tokens = jax.random.randint(jax.random.key(1), (2, 2, 9), 0, 32)
    _, out = jax.jit(step)(init_train_state(params, tx, 0), tokens)
    values = out["update_metrics"]
    if not isinstance(values, dict):  # a packed vector, named by the step's metric_names
        values = dict(zip(step.metric_names, np.asarray(values)))
    rrc = sorted(name for name in values if name.startswith("rrc/"))
    if rrc_tokens:
        assert rrc == [
            "rrc/blocks.0",
            "rrc/blocks.0.attn.proj",
            "rrc/blocks.0.attn.qkv",
            "rrc/blocks.0.mlp.fc",
            "rrc/blocks.0.mlp.proj",
            "rrc/global",
            "rrc/wte",
        ]
        assert all(values[name] > 0 for name in rrc)
    else:
        assert rrc == [] and values["update_l2/global"] > 0


# The metric families one by one, against NumPy in float64 on the per-layer tree of
# _per_layer_and_stacked (2 blocks of a qkv layer with bias, a LayerNorm scale and an mlp.fc layer
# without bias, plus a tied embedding).


def _np_flat(tree) -> dict[str, np.ndarray]:
    return {path: np.asarray(x, np.float64) for path, x in um._flatten(tree)}


def _np_group_members(paths) -> dict[str, list[str]]:
    """``{"blocks.<i>": paths under blocks/<i>/, "global": all paths}``."""
    groups = {"global": list(paths)}
    for path in paths:
        if path.startswith("blocks/"):
            groups.setdefault(".".join(path.split("/")[:2]), []).append(path)
    return groups


def _np_neurons(path: str, x: np.ndarray) -> list[np.ndarray]:
    """Columns of a Dense kernel, rows of an embedding."""
    return list(x) if path.endswith("embedding") else list(x.T)


def _small_update(rng, old):
    return jax.tree.map(lambda x: x + 0.05 * jnp.float32(rng.standard_normal(x.shape)), old)


def test_norm_and_angle_metrics_match_numpy():
    rng = np.random.default_rng(11)
    old, _ = _per_layer_and_stacked(rng, num_layers=2)
    new = _small_update(rng, old)
    m = um.norm_and_angle_metrics(old, new)
    a, b = _np_flat(old), _np_flat(new)
    matrices = [p for p in a if a[p].ndim >= 2]
    expected = {}
    for path in a:
        name = path.replace("/", ".")
        expected[f"update_l2/{name}"] = np.linalg.norm(b[path] - a[path])
        expected[f"weight_norm/{name}"] = np.linalg.norm(b[path])
        expected[f"relative_update/{name}"] = np.linalg.norm(b[path] - a[path]) / np.linalg.norm(a[path])
        if path in matrices:
            expected[f"angle/{name}"] = _np_angle(a[path], b[path])
            angles = [_np_angle(x, y) for x, y in zip(_np_neurons(path, a[path]), _np_neurons(path, b[path]))]
            expected[f"angle_neuron_rms/{name}"] = np.sqrt(np.mean(np.square(angles)))
    for group, members in _np_group_members(a).items():
        cat_a = np.concatenate([a[p].ravel() for p in members])
        cat_b = np.concatenate([b[p].ravel() for p in members])
        expected[f"update_l2/{group}"] = np.linalg.norm(cat_b - cat_a)
        expected[f"weight_norm/{group}"] = np.linalg.norm(cat_b)
        expected[f"relative_update/{group}"] = np.linalg.norm(cat_b - cat_a) / np.linalg.norm(cat_a)
        mats = [p for p in members if p in matrices]  # group angles: the matrices only
        expected[f"angle/{group}"] = _np_angle(
            np.concatenate([a[p].ravel() for p in mats]), np.concatenate([b[p].ravel() for p in mats])
        )
        angles = [_np_angle(x, y) for p in mats for x, y in zip(_np_neurons(p, a[p]), _np_neurons(p, b[p]))]
        expected[f"angle_neuron_rms/{group}"] = np.sqrt(np.mean(np.square(angles)))
    assert sorted(m) == sorted(expected)
    assert all(v.dtype == jnp.float32 and v.shape == () for v in m.values())
    for name, value in expected.items():
        np.testing.assert_allclose(m[name], value, rtol=2e-4, err_msg=name)
    # A flat {path: array} dict gives the same metrics as the tree.
    flat = um.norm_and_angle_metrics(dict(um._flatten(old)), dict(um._flatten(new)))
    assert all(np.array_equal(flat[k], m[k]) for k in m) and sorted(flat) == sorted(m)


def test_rrc_metrics_match_numpy():
    rng = np.random.default_rng(12)
    old, _ = _per_layer_and_stacked(rng, num_layers=2)
    new = _small_update(rng, old)
    a, b = _np_flat(old), _np_flat(new)
    dense = [f"blocks/{i}/{layer}" for i in range(2) for layer in ("attn/qkv", "mlp/fc")]
    xs = {layer: rng.standard_normal((20, 6)) for layer in [*dense, "wte"]}
    captured = {"wte": (jnp.float32(xs["wte"]), None)}  # tied head: logits = x @ E.T
    expected = {}
    for layer in dense:
        bias = a.get(f"{layer}/bias", 0.0)
        x, kernel = xs[layer], a[f"{layer}/kernel"]
        captured[layer] = (jnp.float32(x), jnp.float32(x @ kernel + bias))  # outputs include the bias
        expected[layer] = np.linalg.norm(x @ (b[f"{layer}/kernel"] - kernel)) / np.linalg.norm(x @ kernel)
    emb_old, emb_new = a["wte/embedding"], b["wte/embedding"]
    expected["wte"] = np.linalg.norm(xs["wte"] @ (emb_new - emb_old).T) / np.linalg.norm(xs["wte"] @ emb_old.T)
    m = um.rrc_metrics(old, new, captured)
    want = {f"rrc/{layer.replace('/', '.')}": v for layer, v in expected.items()}
    for i in range(2):
        want[f"rrc/blocks.{i}"] = np.mean([expected[f"blocks/{i}/{layer}"] for layer in ("attn/qkv", "mlp/fc")])
    want["rrc/global"] = np.mean(list(expected.values()))  # the mean over layers, the head included
    assert sorted(m) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(m[name], value, rtol=1e-4, err_msg=name)


def test_snr_metrics_match_numpy():
    rng = np.random.default_rng(13)
    k, b = 4, 2
    template, _ = _per_layer_and_stacked(rng, num_layers=2)
    shapes = {path: x.shape for path, x in um._flatten(template)}
    # K micro-batch gradients per tensor: a common signal plus noise of a different size per tensor.
    micro = {
        path: rng.standard_normal(shape) + rng.uniform(0.5, 3.0) * rng.standard_normal((k, *shape))
        for path, shape in shapes.items()
    }
    mean = {path: g.mean(axis=0) for path, g in micro.items()}
    sums = {path: np.sum(g**2) for path, g in micro.items()}
    grads = {path: jnp.float32(g) for path, g in mean.items()}
    m = um.snr_metrics(grads, MicroBatchStats({p: jnp.float32(s) for p, s in sums.items()}, k, b))
    noise = {p: (sums[p] / k - np.sum(mean[p] ** 2)) / (1 / b - 1 / (k * b)) for p in shapes}
    signal = {p: np.sum(mean[p] ** 2) - noise[p] / (k * b) for p in shapes}

    def phi(s, n):
        return max(s, 0.0) / max(n, 1e-30)

    want = {f"snr/{p.replace('/', '.')}": phi(signal[p], noise[p]) for p in shapes}
    for group, members in _np_group_members(shapes).items():  # signal and noise summed, then the ratio
        want[f"snr/{group}"] = phi(sum(signal[p] for p in members), sum(noise[p] for p in members))
    total_noise, total_signal = sum(noise.values()), sum(signal.values())
    want["snr_noise/global"], want["snr_signal/global"] = total_noise, total_signal
    want["critical_batch/global"] = max(total_noise, 0.0) / total_signal
    assert total_signal > 0 and any(signal[p] < 0 for p in shapes)  # the clamp of phi is exercised
    assert sorted(m) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(m[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    # One micro-batch: no estimate.
    assert um.snr_metrics(grads, MicroBatchStats(sums, 1, b * k)) == {}


def test_momentum_metrics_match_numpy():
    rng = np.random.default_rng(14)
    params, _ = _per_layer_and_stacked(rng, num_layers=2)
    g = _np_flat(params)
    # A first moment for the blocks only (the embedding has none), partly anti-aligned with g.
    mom = {p: -0.4 * x + rng.standard_normal(x.shape) for p, x in g.items() if p.startswith("blocks/")}
    beta, clip = 0.8, 2.0
    m = um.momentum_metrics(params, {p: jnp.float32(x) for p, x in mom.items()}, momentum_beta=beta, grad_clip=clip)
    factor = min(1.0, clip / np.sqrt(sum(np.sum(x**2) for x in g.values())))  # over all tensors
    assert factor < 1.0
    want = {}
    for name, members in [(p.replace("/", "."), [p]) for p in mom] + list(_np_group_members(mom).items()):
        gg = np.concatenate([g[p].ravel() for p in members])
        mm = np.concatenate([mom[p].ravel() for p in members])
        clipped = (1 - beta) * factor * gg
        want[f"grad_momentum_cos/{name}"] = gg @ mm / (np.linalg.norm(gg) * np.linalg.norm(mm))
        want[f"momentum_cancellation/{name}"] = (beta * mm) @ clipped / np.sum(clipped**2)
    assert sorted(m) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(m[name], value, rtol=1e-4, err_msg=name)


def test_update_metrics_is_the_union_of_the_families():
    """On stacked layers with every input given: the families' metrics on the split inputs, exactly."""
    rng = np.random.default_rng(15)
    _, old = _per_layer_and_stacked(rng)
    new = _small_update(rng, old)
    _, grads = _per_layer_and_stacked(rng)
    _, moment = _per_layer_and_stacked(rng)
    k, b, stacked = 3, 2, ("blocks",)
    stats = MicroBatchStats(um.sq_norms(jax.tree.map(lambda x: 2.0 * k * x, grads), stacked), k, b)
    x = jnp.float32(rng.standard_normal((3, 10, 6)))
    y = jnp.einsum("lnc,lco->lno", x, old["blocks"]["attn"]["qkv"]["kernel"])
    captured = {"blocks/attn/qkv": (x, y), "wte": (x[0], None)}
    first_moment = dict(um._flatten(moment))
    got = um.update_metrics(
        old,
        new,
        grads=grads,
        micro_batch_stats=stats,
        first_moment=first_moment,
        momentum_beta=0.85,
        grad_clip=1.0,
        captured=captured,
        stacked=stacked,
    )

    def split(tree):
        return um.split_stacked(dict(um._flatten(tree)), stacked)

    families = [
        um.norm_and_angle_metrics(split(old), split(new)),
        um.rrc_metrics(split(old), split(new), um.split_stacked(captured, stacked)),
        um.snr_metrics(split(grads), stats._replace(sum_sq_norms=um.split_stacked(stats.sum_sq_norms, stacked))),
        um.momentum_metrics(split(grads), um.split_stacked(first_moment, stacked), momentum_beta=0.85, grad_clip=1.0),
    ]
    assert all(families) and sum(len(f) for f in families) == len(got)  # disjoint names, nothing else
    for family in families:
        for name, value in family.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)
