"""The GPT model: shapes, initialisation, and equality with Hugging Face GPT-2."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

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


@pytest.mark.parametrize("fields", HF_CONFIGS)
def test_logits_equal_hugging_face_gpt2(fields):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = ModelConfig(use_bias=True, gelu_approximate=True, **fields)
    _, params = gpt.init_params(cfg, 1)
    # Give biases and LN parameters non-trivial values so every tensor is checked.
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    hf_model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            n_positions=cfg.block_size,
            vocab_size=cfg.vocab_size,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    ).eval()
    state = {k: torch.from_numpy(v.copy()) for k, v in hf.to_hf_state_dict(params, cfg).items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert not unexpected and all(".attn.bias" in k or ".masked_bias" in k for k in missing), missing

    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.block_size))
    with torch.no_grad():
        expected = hf_model(torch.from_numpy(tokens)).logits.numpy()
    model_def, _ = gpt.abstract_params(cfg)
    ours = np.asarray(model_def.merge(params)(jnp.asarray(tokens)))[..., : cfg.vocab_size]
    assert np.max(np.abs(ours - expected)) <= 1e-4

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
