"""Conversion between our parameters and Hugging Face ``GPT2LMHeadModel`` weights.

GPT-2's ``Conv1D`` stores weights as ``(in, out)``, the same layout as our Dense kernels, so no
transpose is needed; ``c_attn`` holds ``[q | k | v]`` along the output axis exactly like our fused
``qkv``. ``lm_head`` is tied to ``wte`` and not stored. Hugging Face GPT-2 uses biases and the
tanh-approximate GELU: :func:`model_config_from_hf` sets both.

Nothing here downloads anything: :func:`load_hf_checkpoint` reads a local folder holding
``config.json`` and ``model.safetensors`` (as ``save_pretrained`` writes it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from warmup_jax.errors import CheckpointError
from warmup_jax.model.config import ModelConfig
from warmup_jax.model.gpt import stack_blocks, unstack_blocks

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
    """``GPT2LMHeadModel`` / ``GPT2Model`` weights (with or without ``transformer.``) -> our parameters."""
    flat = {re.sub(r"^transformer\.", "", k): np.asarray(v, np.float32) for k, v in state_dict.items()}
    params: Params = {}
    for ours, theirs in _name_pairs(cfg):
        if theirs not in flat:
            raise CheckpointError(f"Hugging Face weights lack tensor {theirs!r} (needed for {ours})")
        _set(params, ours, flat[theirs])
    wte = flat["wte.weight"]
    if wte.shape != (cfg.vocab_size, cfg.n_embd):
        raise CheckpointError(
            f"wte.weight has shape {wte.shape}; model config expects ({cfg.vocab_size}, {cfg.n_embd})"
        )
    padded = np.zeros((cfg.padded_vocab_size(), cfg.n_embd), np.float32)
    padded[: cfg.vocab_size] = wte
    params["wte"] = {"embedding": padded}
    return stack_blocks(params) if cfg.scan_layers else params


def model_config_from_hf(hf_config: Mapping[str, Any], **overrides: Any) -> ModelConfig:
    """A ModelConfig equal to a Hugging Face ``GPT2Config`` (given as its ``config.json`` dict)."""
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise CheckpointError(f"activation_function={activation!r} is not supported; allowed: gelu_new, gelu")
    fields = dict(
        n_layer=hf_config["n_layer"],
        n_head=hf_config["n_head"],
        n_embd=hf_config["n_embd"],
        block_size=hf_config["n_positions"],
        vocab_size=hf_config["vocab_size"],
        use_bias=True,
        gelu_approximate=activation != "gelu",
        layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-5),
        init_std=hf_config.get("initializer_range", 0.02),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def load_hf_checkpoint(folder: str, **overrides: Any) -> tuple[ModelConfig, Params]:
    """Reads a local Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``)."""
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
