"""The GPT model: shapes, initialisation, and equality with Hugging Face GPT-2."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from warmup_jax.errors import CheckpointError, ConfigError
from warmup_jax.model import gpt, hf
from warmup_jax.model.config import ModelConfig

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=100)


def test_shapes_and_padding():
    model_def, params = gpt.init_params(TINY, 0)
    assert params["wte"]["embedding"].shape == (128, 32)  # 100 padded to a multiple of 64
    assert params["blocks"]["1"]["attn"]["qkv"]["kernel"].shape == (32, 96)
    logits = model_def.merge(params)(jnp.zeros((3, 7), jnp.int32))
    assert logits.shape == (3, 7, 128) and logits.dtype == jnp.float32


def test_rejects_too_long_context_and_float_tokens():
    model_def, params = gpt.init_params(TINY, 0)
    model = model_def.merge(params)
    with pytest.raises(ValueError, match="block_size=16"):
        model(jnp.zeros((1, 17), jnp.int32))
    with pytest.raises(AssertionError):
        model(jnp.zeros((1, 4), jnp.float32))


def test_nanogpt_initialisation_statistics():
    cfg = dataclasses.replace(TINY, n_layer=4, n_embd=256, n_head=4, vocab_size=512)
    _, params = gpt.init_params(cfg, 0)
    block = params["blocks"]["0"]
    np.testing.assert_allclose(np.std(block["mlp"]["fc"]["kernel"]), 0.02, rtol=0.02)
    np.testing.assert_allclose(np.std(block["attn"]["proj"]["kernel"]), 0.02 / np.sqrt(8), rtol=0.03)
    np.testing.assert_allclose(np.std(block["mlp"]["proj"]["kernel"]), 0.02 / np.sqrt(8), rtol=0.03)
    np.testing.assert_allclose(np.std(params["wte"]["embedding"]), 0.02, rtol=0.02)
    assert np.all(block["ln1"]["scale"] == 1.0)


def test_bfloat16_compute_keeps_float32_params():
    cfg = dataclasses.replace(TINY, compute_dtype="bfloat16")
    model_def, params = gpt.init_params(cfg, 0)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, 100)
    low = model_def.merge(params)(tokens)
    full = gpt.init_params(TINY, 0)[0].merge(params)(tokens)
    assert low.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(low - full))) < 0.05


def test_post_ln_variant_runs_and_differs():
    cfg = dataclasses.replace(TINY, norm_position="post")
    model_def, params = gpt.init_params(cfg, 0)
    assert "ln_f" not in params
    tokens = jnp.arange(8)[None] % 100
    pre_def, pre_params = gpt.init_params(TINY, 0)
    assert not np.allclose(model_def.merge(params)(tokens), pre_def.merge(pre_params)(tokens))


@pytest.mark.parametrize("scan_layers", [False, True])
def test_compiled_operations_are_labelled_by_model_part(scan_layers):
    """The HLO metadata names the model part of each operation, forward and backward (what a
    profile of the step is read by)."""
    model_def, params = gpt.init_params(dataclasses.replace(TINY, scan_layers=scan_layers), 0)
    tokens = jnp.zeros((2, 9), jnp.int32)

    def objective(params):
        return gpt.cross_entropy_loss(model_def.merge(params)(tokens[:, :-1]), tokens[:, 1:])

    hlo = jax.jit(jax.grad(objective)).lower(params).compile().as_text()
    op_names = set(re.findall(r'op_name="([^"]*)"', hlo))
    for part in ("embedding", "layer_norm", "attention", "mlp", "head", "loss"):
        labelled = [name for name in op_names if re.search(rf"\b{part}\b", name)]
        assert any("transpose(" not in name for name in labelled), part  # forward
        assert any("transpose(" in name for name in labelled), part  # backward


def test_cross_entropy_matches_numpy():
    logits = jax.random.normal(jax.random.key(0), (2, 3, 5))
    targets = jnp.array([[0, 1, 4], [2, 2, 3]])
    lp = np.asarray(jax.nn.log_softmax(logits))
    expected = -np.mean(np.take_along_axis(lp, np.asarray(targets)[..., None], -1))
    np.testing.assert_allclose(gpt.cross_entropy_loss(logits, targets), expected, rtol=1e-6)


HF_CONFIGS = [
    dict(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=97),
    dict(n_layer=3, n_head=4, n_embd=48, block_size=24, vocab_size=130),
]


def _hf_fields(cfg: ModelConfig) -> dict:
    """GPT2Config arguments for the shape of ``cfg``."""
    return dict(
        n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.block_size, vocab_size=cfg.vocab_size
    )


def _hf_gpt2(*, seed: int = 0, noise: float = 0.0, **config):
    """A ``GPT2LMHeadModel(GPT2Config(**config))`` in eval mode (dropout inactive, whatever its rates).

    ``noise > 0`` adds that much Gaussian noise to every tensor, so that biases and LayerNorms (0 and 1
    at initialisation) take part in the comparison.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
    with torch.no_grad():
        for p in model.parameters():  # lm_head is wte itself (tied): perturbed once
            p.add_(noise * torch.randn_like(p))
    return model


def _saved_hf_gpt2(folder, **config):
    """:func:`_hf_gpt2` (tiny, perturbed) written with ``save_pretrained`` to ``folder``; returns the model."""
    fields = dict(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=1000)
    model = _hf_gpt2(seed=4, noise=0.05, **{**fields, **config})
    model.save_pretrained(str(folder))
    return model


def _hf_outputs(model, tokens: np.ndarray):
    """Hugging Face's ``(logits, loss)`` for ``tokens`` (labels = the tokens, shifted inside HF)."""
    torch = pytest.importorskip("torch")
    ids = torch.from_numpy(tokens)
    with torch.no_grad():
        out = model(ids, labels=ids)
    return out.logits.numpy(), float(out.loss)


@pytest.mark.parametrize("fields", HF_CONFIGS)
def test_logits_equal_hugging_face_gpt2(fields):
    torch = pytest.importorskip("torch")
    cfg = ModelConfig(use_bias=True, gelu_approximate=True, **fields)
    _, params = gpt.init_params(cfg, 1)
    # Give biases and LN parameters non-trivial values so every tensor is checked.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    hf_model = _hf_gpt2(**_hf_fields(cfg))
    state = {k: torch.from_numpy(v.copy()) for k, v in hf.to_hf_state_dict(params, cfg).items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert not unexpected and all(".attn.bias" in k or ".masked_bias" in k for k in missing), missing

    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.block_size))
    with torch.no_grad():
        expected = hf_model(torch.from_numpy(tokens)).logits.numpy()
    model_def, _ = gpt.abstract_params(cfg)
    ours = np.asarray(model_def.merge(params)(jnp.asarray(tokens)))[..., : cfg.vocab_size]
    assert np.max(np.abs(ours - expected)) <= 1e-5

    back = hf.from_hf_state_dict(hf_model.state_dict(), cfg)
    params["wte"]["embedding"] = params["wte"]["embedding"].at[cfg.vocab_size :].set(0.0)  # padding rows
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, back)


def test_safetensors_round_trip(tmp_path):
    cfg = ModelConfig(use_bias=True, gelu_approximate=True, **HF_CONFIGS[0])
    _, params = gpt.init_params(cfg, 3)
    hf.save_hf_checkpoint(str(tmp_path), params, cfg)
    loaded_cfg, loaded = hf.load_hf_checkpoint(str(tmp_path))
    assert loaded_cfg == cfg
    params["wte"]["embedding"] = params["wte"]["embedding"].at[cfg.vocab_size :].set(0.0)  # padding rows
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, loaded)


def test_missing_hf_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="config.json"):
        hf.load_hf_checkpoint(str(tmp_path / "nope"))


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_scanned_layers_hold_the_same_parameters_and_compute_the_same_logits(norm_position):
    cfg = dataclasses.replace(TINY, n_layer=3, use_bias=True, norm_position=norm_position)
    looped_def, looped = gpt.init_params(cfg, 0)
    scanned_def, scanned = gpt.init_params(dataclasses.replace(cfg, scan_layers=True), 0)
    assert scanned["blocks"]["mlp"]["fc"]["kernel"].shape == (3, 32, 128)
    assert scanned_def.stacked == ("blocks",) and looped_def.stacked == ()
    jax.tree_util.tree_map(np.testing.assert_array_equal, gpt.stack_blocks(looped), scanned)
    jax.tree_util.tree_map(np.testing.assert_array_equal, gpt.unstack_blocks(scanned), looped)
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 100)
    np.testing.assert_allclose(scanned_def.merge(scanned)(tokens), looped_def.merge(looped)(tokens), atol=1e-5)
    # Captured Dense inputs/outputs: the same rows, with a leading layer axis instead of a layer index.
    _, looped_cap = gpt.forward_capturing_dense(looped_def.merge(looped), tokens, num_tokens=8)
    _, scanned_cap = gpt.forward_capturing_dense(scanned_def.merge(scanned), tokens, num_tokens=8)
    assert sorted(scanned_cap) == ["blocks/attn/proj", "blocks/attn/qkv", "blocks/mlp/fc", "blocks/mlp/proj", "wte"]
    np.testing.assert_allclose(scanned_cap["wte"][0], looped_cap["wte"][0], atol=1e-5)
    for i in range(3):
        for a, b in zip(scanned_cap["blocks/mlp/proj"], looped_cap[f"blocks/{i}/mlp/proj"]):
            np.testing.assert_allclose(a[i], b, atol=1e-5)


def test_scanned_layers_apply_dropout_per_layer():
    cfg = dataclasses.replace(TINY, scan_layers=True, dropout=0.5)
    model_def, params = gpt.init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 100)
    model = model_def.merge(params)
    a = model(tokens, deterministic=False, rngs=nnx.Rngs(dropout=0))
    b = model(tokens, deterministic=False, rngs=nnx.Rngs(dropout=0))
    c = model(tokens, deterministic=False, rngs=nnx.Rngs(dropout=1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, model(tokens))


def test_hf_conversion_of_scanned_layers_round_trips():
    cfg = ModelConfig(use_bias=True, gelu_approximate=True, scan_layers=True, **HF_CONFIGS[0])
    _, params = gpt.init_params(cfg, 3)
    state = hf.to_hf_state_dict(params, cfg)
    assert "transformer.h.1.mlp.c_fc.weight" in state
    back = hf.from_hf_state_dict(state, cfg)
    params["wte"]["embedding"] = params["wte"]["embedding"].at[cfg.vocab_size :].set(0.0)  # padding rows
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, back)


@pytest.mark.parametrize("vocab_size", [1000, 250])
def test_loss_of_loaded_checkpoint_equals_hugging_face(tmp_path, vocab_size):
    hf_model = _saved_hf_gpt2(tmp_path, vocab_size=vocab_size)
    cfg, params = hf.load_hf_checkpoint(str(tmp_path))
    assert cfg.vocab_size == vocab_size and cfg.padded_vocab_size() > vocab_size  # default padding to 64
    tokens = np.random.default_rng(0).integers(0, vocab_size, (3, cfg.block_size))
    _, expected = _hf_outputs(hf_model, tokens)
    model = gpt.abstract_params(cfg)[0].merge(params)
    loss = gpt.cross_entropy_loss(model(jnp.asarray(tokens[:, :-1])), jnp.asarray(tokens[:, 1:]))
    assert abs(float(loss) - expected) <= 1e-5, (float(loss), expected)


@pytest.mark.parametrize("compute_dtype,scan_layers", [("float32", False), ("bfloat16", True)])
def test_padding_ids_get_no_probability_and_no_gradient(compute_dtype, scan_layers):
    cfg = dataclasses.replace(TINY, use_bias=True, compute_dtype=compute_dtype, scan_layers=scan_layers)
    model_def, params = gpt.init_params(cfg, 0)  # 100 ids, 128 rows; the 28 padding rows are random
    tokens = jax.random.randint(jax.random.key(1), (4, 16), 0, 100)

    @jax.jit
    def loss_fn(params):
        logits = model_def.merge(params)(tokens[:, :-1])
        return gpt.cross_entropy_loss(logits, tokens[:, 1:]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    probs = np.asarray(jax.nn.softmax(logits))
    assert logits.shape == (4, 15, 128) and np.all(np.asarray(logits)[..., 100:] == gpt.PADDED_LOGIT)
    assert np.all(probs[..., 100:] == 0.0)
    np.testing.assert_allclose(probs[..., :100].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(loss, gpt.cross_entropy_loss(logits[..., :100], tokens[:, 1:]), rtol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    wte_grad = np.asarray(grads["wte"]["embedding"])
    assert np.all(wte_grad[100:] == 0.0) and np.any(wte_grad[:100] != 0.0)
    captured_logits, _ = gpt.forward_capturing_dense(model_def.merge(params), tokens[:, :-1], num_tokens=8)
    np.testing.assert_array_equal(np.asarray(captured_logits)[..., 100:], gpt.PADDED_LOGIT)


@pytest.mark.parametrize(
    "config,overrides",
    [
        (dict(vocab_size=1000), {}),
        (dict(vocab_size=250, activation_function="gelu", n_inner=128), dict(scan_layers=True)),
    ],
)
def test_from_pretrained_gives_hugging_face_logits(tmp_path, config, overrides):
    hf_model = _saved_hf_gpt2(tmp_path, **config)
    model_def, params = hf.from_pretrained(str(tmp_path), **overrides)
    model = model_def.merge(params)
    vocab = config["vocab_size"]
    assert model.cfg.vocab_size == vocab and model.cfg.dropout == 0.0  # HF's dropout rates (0.1) are not taken
    assert model.cfg.gelu_approximate == (config.get("activation_function", "gelu_new") != "gelu")
    assert all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    tokens = np.random.default_rng(1).integers(0, vocab, (2, model.cfg.block_size))
    expected, _ = _hf_outputs(hf_model, tokens)
    logits = np.asarray(jax.jit(lambda p, t: model_def.merge(p)(t))(params, jnp.asarray(tokens)))
    assert logits.shape[-1] == model.cfg.padded_vocab_size()
    assert np.max(np.abs(logits[..., :vocab] - expected)) <= 1e-5
    assert np.all(logits[..., vocab:] == gpt.PADDED_LOGIT)


def test_from_pretrained_casts_to_param_dtype(tmp_path):
    _saved_hf_gpt2(tmp_path, vocab_size=250)
    _, params = hf.from_pretrained(str(tmp_path), param_dtype="bfloat16", compute_dtype="bfloat16")
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(params))


def _gpt2_config_dict(**changes) -> dict:
    """``config.json`` of a tiny GPT-2 as transformers writes it, with ``changes``."""
    transformers = pytest.importorskip("transformers")
    fields = dict(n_layer=2, n_head=2, n_embd=32, n_positions=16, vocab_size=250)
    return {**transformers.GPT2Config(**fields).to_dict(), **changes}


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("model_type", "gpt_neo", "'gpt2'"),
        ("activation_function", "relu", "gelu_new"),
        ("activation_function", "quick_gelu", "gelu_new"),
        ("activation_function", "gelu_10", "gelu_new"),
        ("n_inner", 64, "4 * n_embd = 128"),
        ("scale_attn_weights", False, "True"),
        ("scale_attn_by_inverse_layer_idx", True, "False"),
        ("reorder_and_upcast_attn", True, "False"),
        ("add_cross_attention", True, "False"),
        ("tie_word_embeddings", False, "True"),
        ("quantization_config", {"quant_method": "bitsandbytes"}, "None"),
    ],
)
def test_hf_settings_the_model_does_not_implement_are_refused(key, value, allowed):
    with pytest.raises(CheckpointError) as info:
        hf.model_config_from_hf(_gpt2_config_dict(**{key: value}))
    message = str(info.value)
    assert f"{key}={value!r}" in message and "allowed: " in message and allowed in message, message


def test_hf_settings_equal_to_ours_are_accepted():
    for activation, approximate in [
        ("gelu_new", True),
        ("gelu_fast", True),
        ("gelu_pytorch_tanh", True),
        ("gelu", False),
    ]:
        cfg = hf.model_config_from_hf(_gpt2_config_dict(activation_function=activation, n_inner=128))
        assert cfg.gelu_approximate == approximate and cfg.use_bias and cfg.dropout == 0.0
    legacy = {k: v for k, v in _gpt2_config_dict().items() if k not in ("model_type", "n_inner", "scale_attn_weights")}
    assert hf.model_config_from_hf(legacy).n_embd == 32  # absent keys take GPT2Config's defaults


def test_hf_overrides_may_not_change_the_network():
    base = _gpt2_config_dict()
    cfg = hf.model_config_from_hf(base, compute_dtype="bfloat16", scan_layers=True, dropout=0.1, n_layer=2)
    assert (cfg.compute_dtype, cfg.scan_layers, cfg.dropout, cfg.n_layer) == ("bfloat16", True, 0.1, 2)
    for key, value in [("n_layer", 3), ("norm_position", "post"), ("use_bias", False), ("gelu_approximate", False)]:
        with pytest.raises(CheckpointError, match=f"override {key}={value!r} contradicts"):
            hf.model_config_from_hf(base, **{key: value})
    with pytest.raises(ConfigError, match="not a model field"):
        hf.model_config_from_hf(base, n_layers=2)


def test_hf_weights_of_the_wrong_shape_are_refused(tmp_path):
    cfg = ModelConfig(use_bias=True, gelu_approximate=True, **HF_CONFIGS[0])
    state = hf.to_hf_state_dict(gpt.init_params(cfg, 0)[1], cfg)
    state["transformer.h.1.mlp.c_fc.weight"] = state["transformer.h.1.mlp.c_fc.weight"][:, :100]
    with pytest.raises(
        CheckpointError, match=r"h\.1\.mlp\.c_fc\.weight has shape \(64, 100\); model config expects \(64, 256\)"
    ):
        hf.from_hf_state_dict(state, cfg)
