"""Conversion between our parameters and Hugging Face ``GPT2LMHeadModel`` weights.

GPT-2's ``Conv1D`` stores weights as ``(in, out)``, the same layout as our Dense kernels, so no
transpose is needed; ``c_attn`` holds ``[q | k | v]`` along the output axis exactly like our fused
``qkv``. ``lm_head`` is tied to ``wte`` and not stored. Hugging Face GPT-2 uses biases and the
tanh-approximate GELU: :func:`model_config_from_hf` sets both.

Nothing here downloads anything: :func:`from_pretrained` (a ready model) and
:func:`load_hf_checkpoint` (config and numpy weights) read a local folder holding ``config.json`` and
``model.safetensors`` (as ``save_pretrained`` writes it). Configurations our GPT does not compute
(see :func:`model_config_from_hf`) are refused with a ``CheckpointError``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from warmup_jax.errors import CheckpointError, ConfigError
from warmup_jax.model.config import ModelConfig
from warmup_jax.model.gpt import ModelDef, abstract_params, stack_blocks, unstack_blocks

Params = dict[str, Any]

# (our path under blocks/<i>/, HF name under h.<i>.)
_BLOCK_MAP = (
    ("ln1/scale", "ln_1.weight"),
    ("ln1/bias", "ln_1.bias"),
    ("attn/qkv/kernel", "attn.c_attn.weight"),
    ("attn/qkv/bias", "attn.c_attn.bias"),
    ("attn/proj/kernel", "attn.c_proj.weight"),
    ("attn/proj/bias", "attn.c_proj.bias"),
    ("ln2/scale", "ln_2.weight"),
    ("ln2/bias", "ln_2.bias"),
    ("mlp/fc/kernel", "mlp.c_fc.weight"),
    ("mlp/fc/bias", "mlp.c_fc.bias"),
    ("mlp/proj/kernel", "mlp.c_proj.weight"),
    ("mlp/proj/bias", "mlp.c_proj.bias"),
)
_TOP_MAP = (("wpe/embedding", "wpe.weight"), ("ln_f/scale", "ln_f.weight"), ("ln_f/bias", "ln_f.bias"))


def _name_pairs(cfg: ModelConfig):
    """Yields (our path, HF name) for every tensor except the (padded) token embedding."""
    for ours, theirs in _TOP_MAP:
        if cfg.use_bias or not ours.endswith("bias"):
            yield ours, theirs
    for i in range(cfg.n_layer):
        for ours, theirs in _BLOCK_MAP:
            if cfg.use_bias or not ours.endswith("bias"):
                yield f"blocks/{i}/{ours}", f"h.{i}.{theirs}"


def _get(tree: Params, path: str) -> Any:
    for key in path.split("/"):
        tree = tree[key]
    return tree


def _set(tree: Params, path: str, value: Any) -> None:
    *parents, leaf = path.split("/")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def to_hf_state_dict(params: Params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Our parameters -> ``GPT2LMHeadModel.state_dict()`` names (prefix ``transformer.``), numpy float32.

    The token embedding is cut back to ``cfg.vocab_size`` rows (our table is padded).
    """
    if cfg.norm_position != "pre":
        raise ValueError("Hugging Face GPT-2 is Pre-LN; a Post-LN model has no HF equivalent")
    params = unstack_blocks(params)
    out = {f"transformer.{theirs}": np.asarray(_get(params, ours), np.float32) for ours, theirs in _name_pairs(cfg)}
    wte = np.asarray(params["wte"]["embedding"], np.float32)[: cfg.vocab_size]
    out["transformer.wte.weight"] = wte
    out["lm_head.weight"] = wte
    return out


def from_hf_state_dict(state_dict: Mapping[str, Any], cfg: ModelConfig) -> Params:
    """``GPT2LMHeadModel`` / ``GPT2Model`` weights (with or without ``transformer.``) -> our parameters.

    Every tensor's shape is checked against ``cfg``; the token embedding is padded with zero rows to
    ``cfg.padded_vocab_size()`` (their logits are masked by the model whatever the rows hold).
    Parameters come back as numpy float32, in the looped or the scanned layout as ``cfg.scan_layers`` says.
    """
    if cfg.norm_position != "pre":
        raise ValueError("Hugging Face GPT-2 is Pre-LN; its weights cannot make a Post-LN model")
    flat = {re.sub(r"^transformer\.", "", k): np.asarray(v, np.float32) for k, v in state_dict.items()}
    _, expected = abstract_params(dataclasses.replace(cfg, scan_layers=False))
    params: Params = {}
    for ours, theirs in _name_pairs(cfg):
        if theirs not in flat:
            raise CheckpointError(f"Hugging Face weights lack tensor {theirs!r} (needed for {ours})")
        shape = tuple(_get(expected, ours).shape)
        if flat[theirs].shape != shape:
            raise CheckpointError(f"{theirs} has shape {flat[theirs].shape}; model config expects {shape}")
        _set(params, ours, flat[theirs])
    if "wte.weight" not in flat:
        raise CheckpointError("Hugging Face weights lack tensor 'wte.weight' (needed for wte/embedding)")
    wte = flat["wte.weight"]
    if wte.shape != (cfg.vocab_size, cfg.n_embd):
        raise CheckpointError(
            f"wte.weight has shape {wte.shape}; model config expects ({cfg.vocab_size}, {cfg.n_embd})"
        )
    padded = np.zeros((cfg.padded_vocab_size(), cfg.n_embd), np.float32)
    padded[: cfg.vocab_size] = wte
    params["wte"] = {"embedding": padded}
    return stack_blocks(params) if cfg.scan_layers else params


# Activation names of transformers' ACT2FN that compute our GELU: tanh-approximate or exact (erf).
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_fast", "gelu_accurate")
_EXACT_GELUS = ("gelu", "gelu_python")

# GPT2Config switches whose other value changes the network or its numerics, with the value we implement.
_FIXED_SWITCHES = (
    ("scale_attn_weights", True),  # False: attention scores not divided by sqrt(head_dim)
    ("scale_attn_by_inverse_layer_idx", False),  # True: scores of layer i further divided by i + 1
    ("reorder_and_upcast_attn", False),  # True: k scaled before q @ k, scores upcast to float32
    ("add_cross_attention", False),  # True: every block has a cross-attention sub-layer
    ("tie_word_embeddings", True),  # False: lm_head is its own matrix, not wte
)

# ModelConfig fields that do not change the function the checkpoint computes: free to override.
_FREE_OVERRIDES = (
    "compute_dtype",
    "param_dtype",
    "attention_implementation",
    "scan_layers",
    "dropout",
    "vocab_multiple",
    "init_std",
)


def _refuse(key: str, value: Any, allowed: str) -> CheckpointError:
    return CheckpointError(f"Hugging Face config {key}={value!r} is not supported by this model; allowed: {allowed}")


def _check_supported(hf_config: Mapping[str, Any]) -> None:
    """Raises CheckpointError for any GPT2Config setting whose forward pass our GPT does not compute."""
    model_type = hf_config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise _refuse("model_type", model_type, "'gpt2'")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in _TANH_GELUS + _EXACT_GELUS:
        raise _refuse("activation_function", activation, ", ".join(_TANH_GELUS + _EXACT_GELUS))
    n_inner, n_embd = hf_config.get("n_inner"), hf_config["n_embd"]
    if n_inner is not None and n_inner != 4 * n_embd:
        raise _refuse("n_inner", n_inner, f"None or 4 * n_embd = {4 * n_embd}")
    for key, implemented in _FIXED_SWITCHES:
        value = hf_config.get(key, implemented)
        if value != implemented:
            raise _refuse(key, value, repr(implemented))
    if hf_config.get("quantization_config"):
        raise _refuse("quantization_config", hf_config["quantization_config"], "None (plain float weights)")


def model_config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """A ModelConfig computing the same network as a Hugging Face ``GPT2Config`` (its ``config.json`` dict).

    Settings our GPT does not implement are refused rather than ignored: ``model_type`` other than
    ``gpt2``, an activation other than the GELUs, ``n_inner`` other than None or ``4 * n_embd``,
    ``scale_attn_weights=False``, ``scale_attn_by_inverse_layer_idx=True``,
    ``reorder_and_upcast_attn=True``, ``add_cross_attention=True``, ``tie_word_embeddings=False``, and a
    ``quantization_config``. Keys that do not change the forward pass (token ids, ``use_cache``, the
    ``summary_*`` fields of the multiple-choice head) are ignored. So are the dropout rates
    (``resid_pdrop``, ``embd_pdrop``, ``attn_pdrop``), which act only in training: the model is built with
    ``dropout=0`` unless ``dropout`` is overridden (ours is one rate, on the embeddings and the residual
    branches; there is no attention-probability dropout).

    Args:
      hf_config: the parsed ``config.json``.
      **overrides: ModelConfig fields that leave the checkpoint's function unchanged (``compute_dtype``,
        ``param_dtype``, ``attention_implementation``, ``scan_layers``, ``dropout``, ``vocab_multiple``,
        ``init_std``). Any other field may only be given the checkpoint's own value.

    Returns:
      The validated ModelConfig (biases on, GELU approximation as the checkpoint's activation).

    Raises:
      CheckpointError: an unsupported setting, or an override that contradicts the checkpoint.
      ConfigError: an override that is not a ModelConfig field, or an invalid value.
    """
    _check_supported(hf_config)
    activation = hf_config.get("activation_function", "gelu_new")
    fields = dict(
        n_layer=hf_config["n_layer"],
        n_head=hf_config["n_head"],
        n_embd=hf_config["n_embd"],
        block_size=hf_config["n_positions"],
        vocab_size=hf_config["vocab_size"],
        use_bias=True,
        gelu_approximate=activation in _TANH_GELUS,
        layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-5),
        init_std=hf_config.get("initializer_range", 0.02),
    )
    cfg = ModelConfig(**fields)
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ConfigError(f"model.{key} is not a model field; allowed overrides: {', '.join(_FREE_OVERRIDES)}")
        if key not in _FREE_OVERRIDES and value != getattr(cfg, key):
            raise CheckpointError(
                f"override {key}={value!r} contradicts the checkpoint's {key}={getattr(cfg, key)!r}; "
                f"allowed: the checkpoint's value, or overrides of {', '.join(_FREE_OVERRIDES)}"
            )
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    return cfg


def load_hf_checkpoint(folder: str, **overrides: Any) -> tuple[ModelConfig, Params]:
    """Reads a local Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``).

    Returns ``(cfg, params)`` with numpy float32 parameters; :func:`from_pretrained` returns a ready
    model instead. ``overrides`` as in :func:`model_config_from_hf`.
    """
    from safetensors.numpy import load_file

    config_path = os.path.join(folder, "config.json")
    weights_path = os.path.join(folder, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise CheckpointError(
                f"{path} does not exist; a Hugging Face GPT-2 folder needs config.json "
                "and model.safetensors (save_pretrained writes both)"
            )
    with open(config_path) as f:
        cfg = model_config_from_hf(json.load(f), **overrides)
    return cfg, from_hf_state_dict(load_file(weights_path), cfg)


def from_pretrained(folder: str, **overrides: Any) -> tuple[ModelDef, Params]:
    """Our GPT with the weights of a local Hugging Face GPT-2 folder, as ``(model_def, params)``.

    The same pair as :func:`warmup_jax.model.gpt.init_params`, with the checkpoint's weights instead of
    random ones: ``model_def.merge(params)`` is the ``GPT`` module (its ``cfg`` the ModelConfig), and
    ``(model_def, params)`` is what the jitted train and eval steps take. Parameters are jax arrays of
    ``param_dtype``. The logits have the padded vocabulary's width; the padding ids' logits are masked,
    so losses and probabilities equal Hugging Face's.

    Args:
      folder: a local folder with ``config.json`` and ``model.safetensors`` (as ``save_pretrained``
        writes them); nothing is downloaded.
      **overrides: ModelConfig fields that do not change the checkpoint's function, e.g.
        ``compute_dtype="bfloat16"``, ``scan_layers=True``, ``dropout=0.1`` (see :func:`model_config_from_hf`).

    Returns:
      ``(model_def, params)``.

    Raises:
      CheckpointError: missing files or tensors, wrong shapes, or a config the model does not implement.

    Example:
      >>> from warmup_jax.model import gpt, hf
      >>> model_def, params = hf.from_pretrained("checkpoints/gpt2", compute_dtype="bfloat16")
      >>> model = model_def.merge(params)
      >>> logits = model(tokens_BxT)[..., : model.cfg.vocab_size]  # drop the padding columns
      >>> loss = gpt.cross_entropy_loss(model(tokens_BxT[:, :-1]), tokens_BxT[:, 1:])
    """
    cfg, loaded = load_hf_checkpoint(folder, **overrides)
    model_def, template = abstract_params(cfg)
    params = jax.tree_util.tree_map(lambda spec, x: jnp.asarray(x, spec.dtype), template, loaded)
    return model_def, params


def save_hf_checkpoint(folder: str, params: Params, cfg: ModelConfig) -> None:
    """Writes ``config.json`` + ``model.safetensors`` that ``GPT2LMHeadModel.from_pretrained`` reads."""
    from safetensors.numpy import save_file

    if not cfg.use_bias or not cfg.gelu_approximate:
        raise ValueError("Hugging Face GPT-2 needs model.use_bias=True and model.gelu_approximate=True")
    os.makedirs(folder, exist_ok=True)
    state = to_hf_state_dict(params, cfg)
    state.pop("lm_head.weight")  # tied; HF re-ties on load
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(folder, "model.safetensors"))
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_embd": cfg.n_embd,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "vocab_size": cfg.vocab_size,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": True,
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
