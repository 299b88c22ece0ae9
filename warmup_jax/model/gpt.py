"""GPT-2 in Flax NNX, numerically the same network as nanoGPT's.

Layout (Pre-LN, the GPT-2 default)::

    x = wte[tokens] + wpe[positions]
    for each block:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))
    logits = ln_f(x) @ wte.T                      # weight tying

Post-LN (``norm_position="post"``, Xiong et al. 2020) is ``x = ln1(x + attn(x)); x = ln2(x + mlp(x))``
with no final LayerNorm.

Initialisation follows nanoGPT: every Dense kernel and both embeddings N(0, 0.02); the two residual
output projections (``attn.proj``, ``mlp.proj``) N(0, 0.02 / sqrt(2 n_layer)); biases 0; LayerNorm
scale 1. Dense kernels are ``(in, out)`` (a neuron is a column), embeddings ``(vocab, d)``.

Parameters live in float32 (``param_dtype``); activations and matmuls run in ``compute_dtype``;
LayerNorm statistics and the logits are computed in float32.

The token embedding has ``cfg.padded_vocab_size()`` rows (a multiple of ``vocab_multiple``), so the
logits have that many columns too; the columns of the padding ids (``>= cfg.vocab_size``) are set to
:data:`PADDED_LOGIT`, so they get no probability (exactly 0 in float32) and no gradient, in the loss,
in evaluation and in anything sampled from the logits.

With ``scan_layers=True`` the blocks are one module whose parameters carry a leading layer axis
(``params["blocks"]["mlp"]["fc"]["kernel"]`` is ``(n_layer, in, out)``), run with ``lax.scan``, so
compile time does not grow with depth. The blocks are built one by one from the same random stream
and then stacked, so a scanned model holds exactly the parameters of the looped model with the same
seed (:func:`stack_blocks` / :func:`unstack_blocks` convert between the two layouts).
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from warmup_jax.model.config import ModelConfig

Params = dict[str, Any]

# The logit of every padding id. Finite, unlike -inf, so that no ``inf - inf`` or ``0 * inf`` (NaN) can
# appear in a loss, a metric or a gradient; low enough that exp(PADDED_LOGIT - max logit) is exactly 0.
PADDED_LOGIT = -1e9


def _dtype(name: str) -> jnp.dtype:
    return jnp.dtype(name)


def token_subsample(num_rows: int, num_tokens: int) -> slice:
    """Rows ``0, s, 2s, ...`` (``min(num_tokens, num_rows)`` of them) of the flattened ``B*T`` tokens.

    A strided slice costs next to nothing, unlike a gather. The stride ``s ~ num_rows / num_tokens``
    is made odd, so that with a power-of-two sequence length the rows cover every position.
    """
    stride = max(1, num_rows // max(num_tokens, 1))
    if stride > 1 and stride % 2 == 0:
        stride -= 1
    count = min(num_tokens, -(-num_rows // stride))
    return slice(0, (count - 1) * stride + 1, stride)


class Dense(nnx.Linear):
    """``nnx.Linear`` that can record a token subsample of its inputs and outputs.

    Recording is off (``capture_tokens == 0``) except inside :func:`forward_capturing_dense`,
    which the update metrics use for the relative representation change; it never changes the
    output.
    """

    capture_tokens: int = 0  # class default; set on the instance only while capturing

    def __call__(self, inputs: jax.Array) -> jax.Array:
        # The product runs on the tokens flattened to rows, (B*T, C) @ (C, O). Its gradient is then
        # two plain 2-D products; over (B, T, C) inputs, XLA on CPU gave the kernel's gradient a
        # transposed copy of the output gradient fused with GELU's derivative, which took half of
        # the MLP's backward pass (bench/profile_step.py). The values are the same.
        *lead, channels = inputs.shape
        x_NxC = inputs.reshape(-1, channels)
        y_NxO = super().__call__(x_NxC)
        if self.capture_tokens:
            rows = token_subsample(x_NxC.shape[0], self.capture_tokens)
            keep = lambda _, new: new  # noqa: E731  (one call per forward pass)
            self.sow(nnx.Intermediate, "inputs", x_NxC[rows], reduce_fn=keep)
            self.sow(nnx.Intermediate, "outputs", y_NxO[rows], reduce_fn=keep)
        return y_NxO.reshape(*lead, -1)


def _dense(cfg: ModelConfig, fan_in: int, fan_out: int, std: float, rngs: nnx.Rngs) -> Dense:
    return Dense(
        fan_in,
        fan_out,
        use_bias=cfg.use_bias,
        dtype=_dtype(cfg.compute_dtype),
        param_dtype=_dtype(cfg.param_dtype),
        kernel_init=nnx.initializers.normal(std),
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


def _layer_norm(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        cfg.n_embd,
        epsilon=cfg.layer_norm_epsilon,
        use_bias=cfg.use_bias,
        dtype=jnp.float32,
        param_dtype=_dtype(cfg.param_dtype),
        rngs=rngs,
    )


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention with a fused q|k|v projection (GPT-2's ``c_attn``)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.implementation = None if cfg.attention_implementation == "auto" else cfg.attention_implementation
        residual_std = cfg.init_std / math.sqrt(2 * cfg.n_layer)
        self.qkv = _dense(cfg, cfg.n_embd, 3 * cfg.n_embd, cfg.init_std, rngs)
        self.proj = _dense(cfg, cfg.n_embd, cfg.n_embd, residual_std, rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        b, t, d = x_BxTxD.shape
        qkv_BxTx3D = self.qkv(x_BxTxD)
        q, k, v = (a.reshape(b, t, self.n_head, self.head_dim) for a in jnp.split(qkv_BxTx3D, 3, axis=-1))
        y_BxTxNxH = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=self.implementation)
        return self.proj(y_BxTxNxH.reshape(b, t, d))


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.approximate = cfg.gelu_approximate
        self.fc = _dense(cfg, cfg.n_embd, 4 * cfg.n_embd, cfg.init_std, rngs)
        self.proj = _dense(cfg, 4 * cfg.n_embd, cfg.n_embd, cfg.init_std / math.sqrt(2 * cfg.n_layer), rngs)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return self.proj(jax.nn.gelu(self.fc(x_BxTxD), approximate=self.approximate))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.pre_norm = cfg.norm_position == "pre"
        self.compute_dtype = _dtype(cfg.compute_dtype)
        self.ln1 = _layer_norm(cfg, rngs)
        self.attn = CausalSelfAttention(cfg, rngs=rngs)
        self.ln2 = _layer_norm(cfg, rngs)
        self.mlp = MLP(cfg, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout)

    def _norm(self, ln: nnx.LayerNorm, x: jax.Array) -> jax.Array:
        return ln(x).astype(self.compute_dtype)

    def __call__(self, x: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        drop = lambda y: self.dropout(y, deterministic=deterministic, rngs=rngs)  # noqa: E731
        # The named scopes label the compiled operations (profiles, HLO dumps) by model part.
        attn = jax.named_scope("attention")(self.attn)
        mlp = jax.named_scope("mlp")(self.mlp)
        norm = jax.named_scope("layer_norm")(self._norm)
        if self.pre_norm:
            x = x + drop(attn(norm(self.ln1, x)))
            return x + drop(mlp(norm(self.ln2, x)))
        x = norm(self.ln1, x + drop(attn(x)))
        return norm(self.ln2, x + drop(mlp(x)))


class GPT(nnx.Module):
    """GPT-2 language model. ``model(tokens_BxT) -> logits_BxTxV`` (float32).

    ``V`` is the padded vocabulary; the logits of ids ``>= cfg.vocab_size`` are :data:`PADDED_LOGIT`.
    """

    capture_tokens: int = 0  # > 0 only inside forward_capturing_dense: record the head's inputs

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        if cfg.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set (> 0) before building the model")
        self.cfg = cfg
        vocab = cfg.padded_vocab_size()
        embed_init = nnx.initializers.normal(cfg.init_std)
        param_dtype, compute_dtype = _dtype(cfg.param_dtype), _dtype(cfg.compute_dtype)
        self.wte = nnx.Embed(
            vocab, cfg.n_embd, dtype=compute_dtype, param_dtype=param_dtype, embedding_init=embed_init, rngs=rngs
        )
        self.wpe = nnx.Embed(
            cfg.block_size,
            cfg.n_embd,
            dtype=compute_dtype,
            param_dtype=param_dtype,
            embedding_init=embed_init,
            rngs=rngs,
        )
        self.dropout = nnx.Dropout(cfg.dropout)
        blocks = [Block(cfg, rngs=rngs) for _ in range(cfg.n_layer)]
        self.blocks = _stack_modules(blocks) if cfg.scan_layers else nnx.List(blocks)
        self.ln_f = _layer_norm(cfg, rngs) if cfg.norm_position == "pre" else None

    def __call__(
        self,
        tokens_BxT: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> jax.Array:
        return self.forward(tokens_BxT, deterministic=deterministic, rngs=rngs)[0]

    def forward(
        self,
        tokens_BxT: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """``(logits, captured)``: ``captured`` is empty except inside :func:`forward_capturing_dense`,
        where it holds the tied head's inputs (``{"wte": {"inputs": x_NxD}}``) and, with
        ``scan_layers``, what the stacked blocks sowed (``{"blocks": ...}``, leading layer axis)."""
        chex.assert_rank(tokens_BxT, 2)
        chex.assert_type(tokens_BxT, int)
        b, t = tokens_BxT.shape
        if t > self.cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds model.block_size={self.cfg.block_size}")
        with jax.named_scope("embedding"):
            x_BxTxD = self.wte(tokens_BxT) + self.wpe(jnp.arange(t))[None]
        x_BxTxD = self.dropout(x_BxTxD, deterministic=deterministic, rngs=rngs)
        captured: dict[str, Any] = {}
        if self.cfg.scan_layers:
            x_BxTxD, stacked = self._scan_blocks(x_BxTxD, deterministic=deterministic, rngs=rngs)
            if stacked:
                captured["blocks"] = stacked
        else:
            for block in self.blocks:
                x_BxTxD = block(x_BxTxD, deterministic=deterministic, rngs=rngs)
        if self.ln_f is not None:
            with jax.named_scope("layer_norm"):
                x_BxTxD = self.ln_f(x_BxTxD)
        if self.capture_tokens:
            rows = token_subsample(b * t, self.capture_tokens)
            captured["wte"] = {"inputs": x_BxTxD.reshape(b * t, -1)[rows]}
        # Tied output head; logits in float32 for a stable softmax cross-entropy.
        with jax.named_scope("head"):
            logits_BxTxV = jnp.dot(
                x_BxTxD.astype(self.wte.dtype),
                self.wte.embedding[...].astype(self.wte.dtype).T,
                preferred_element_type=jnp.float32,
            )
            chex.assert_shape(logits_BxTxV, (b, t, self.cfg.padded_vocab_size()))
            return mask_padded_logits(logits_BxTxV, self.cfg.vocab_size), captured

    def _scan_blocks(
        self, x_BxTxD: jax.Array, *, deterministic: bool, rngs: nnx.Rngs | None
    ) -> tuple[jax.Array, dict[str, Any]]:
        """The stacked blocks applied in order with ``lax.scan`` (one dropout key per layer)."""
        graphdef, stacked_state = nnx.split(self.blocks)
        capturing = any(isinstance(m, Dense) and m.capture_tokens for _, m in nnx.iter_modules(self.blocks))
        keys = None
        if rngs is not None and not deterministic:
            keys = jax.random.split(rngs.dropout(), self.cfg.n_layer)

        def layer(x, inputs):
            layer_state, key = inputs
            block = nnx.merge(graphdef, layer_state)
            kwargs = dict(deterministic=deterministic, rngs=None if key is None else nnx.Rngs(dropout=key))
            if not capturing:
                return block(x, **kwargs), {}
            y, sown = nnx.capture(block, nnx.Intermediate)(x, **kwargs)
            return y, _stringify_keys(nnx.to_pure_dict(sown))

        return jax.lax.scan(layer, x_BxTxD, (stacked_state, keys))


def mask_padded_logits(logits_BxTxV: jax.Array, vocab_size: int) -> jax.Array:
    """Sets the logits of the padding ids (``>= vocab_size``) to :data:`PADDED_LOGIT`.

    Args:
      logits_BxTxV: logits over the padded vocabulary (last axis).
      vocab_size: the number of real ids; ids ``0 .. vocab_size - 1`` keep their logits.

    Returns:
      The logits, same shape and dtype; unchanged when there is no padding.
    """
    padded = logits_BxTxV.shape[-1]
    if vocab_size >= padded:
        return logits_BxTxV
    is_real_V = jnp.arange(padded) < vocab_size
    return jnp.where(is_real_V, logits_BxTxV, jnp.asarray(PADDED_LOGIT, logits_BxTxV.dtype))


def _stack_modules(modules: list[nnx.Module]) -> nnx.Module:
    """One module of the same type whose state leaves are the modules' leaves stacked on axis 0."""
    states = [nnx.state(m) for m in modules]
    return nnx.merge(nnx.graphdef(modules[0]), jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states))


def stack_blocks(params: Params) -> Params:
    """Looped layout (``params["blocks"]["<i>"]``) -> scanned layout (leading layer axis)."""
    blocks = params["blocks"]
    layers = [blocks[str(i)] for i in range(len(blocks))]
    return {**params, "blocks": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)}


def unstack_blocks(params: Params) -> Params:
    """Scanned layout -> looped layout; a looped tree is returned unchanged."""
    blocks = params["blocks"]
    if "0" in blocks:
        return params
    num_layers = jax.tree_util.tree_leaves(blocks)[0].shape[0]
    layers = {str(i): jax.tree_util.tree_map(lambda x, i=i: x[i], blocks) for i in range(num_layers)}
    return {**params, "blocks": layers}


class ModelDef:
    """What is needed, besides the parameters, to rebuild a model inside a jitted function.

    ``split(model) -> (ModelDef, params)``; ``model_def.merge(params) -> GPT``. Parameters are a
    plain nested dict with string keys (``params["blocks"]["0"]["attn"]["qkv"]["kernel"]``): what
    optax parameter groups, orbax and the metrics see.
    """

    def __init__(
        self, graphdef: nnx.GraphDef, param_template: nnx.State, rest: nnx.State, stacked: tuple[str, ...] = ()
    ):
        self.graphdef = graphdef
        self.param_template = param_template  # abstract (shape/dtype) nnx.State of the Params
        self.rest = rest  # non-Param state (e.g. RNG counters); empty for GPT
        self.stacked = stacked  # parameter path prefixes stored with a leading layer axis

    def merge(self, params: Params) -> GPT:
        param_state = jax.tree_util.tree_map(lambda leaf: leaf, self.param_template)
        nnx.replace_by_pure_dict(param_state, params)
        return nnx.merge(self.graphdef, param_state, self.rest)


def split(model: GPT) -> tuple[ModelDef, Params]:
    graphdef, param_state, rest = nnx.split(model, nnx.Param, ...)
    template = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), param_state)
    stacked = ("blocks",) if model.cfg.scan_layers else ()
    return ModelDef(graphdef, template, rest, stacked), _stringify_keys(nnx.to_pure_dict(param_state))


def init_params(cfg: ModelConfig, seed: int | jax.Array) -> tuple[ModelDef, Params]:
    """Builds the model and returns its definition and freshly initialised parameters."""
    key = seed if isinstance(seed, jax.Array) else jax.random.key(seed)
    return split(GPT(cfg, rngs=nnx.Rngs(params=key)))


def abstract_params(cfg: ModelConfig) -> tuple[ModelDef, Params]:
    """Like :func:`init_params` but allocates nothing: parameters are ``jax.ShapeDtypeStruct``."""
    model = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(params=0)))
    return split(model)


def forward_capturing_dense(
    model: GPT, tokens_BxT: jax.Array, *, num_tokens: int, **kwargs: Any
) -> tuple[jax.Array, dict[str, tuple[jax.Array, jax.Array]]]:
    """``model(tokens_BxT, **kwargs)`` plus the inputs and outputs of every Dense layer.

    Returns ``(logits, captured)`` with ``captured["blocks/0/attn/qkv"] = (x_NxC, y_NxO)``: the
    layer's inputs and outputs (bias included) at the same ``N = min(num_tokens, B*T)`` token
    positions (a fixed strided subset, see :func:`token_subsample`). With ``scan_layers`` the keys
    have no layer index (``"blocks/attn/qkv"``) and the arrays a leading layer axis,
    ``(x_LxNxC, y_LxNxO)``. The tied output head (``logits = x @ wte.T``) is recorded as
    ``captured["wte"] = (x_NxD, None)``: its inputs only, as its outputs (the logits) are large.
    Uses ``nnx.capture``; the logits are those of the plain forward pass.
    """
    modules = [m for _, m in nnx.iter_modules(model) if isinstance(m, (Dense, GPT))]
    for m in modules:
        m.capture_tokens = num_tokens
    try:
        (logits, recorded), sown = nnx.capture(model.forward, nnx.Intermediate)(tokens_BxT, **kwargs)
    finally:
        for m in modules:
            del m.capture_tokens
    captured = {}

    def collect(tree: Any, prefix: tuple[str, ...]) -> None:
        if isinstance(tree, dict) and "inputs" in tree:
            captured["/".join(prefix)] = (tree["inputs"], tree.get("outputs"))
        elif isinstance(tree, dict):
            for key, value in tree.items():
                collect(value, (*prefix, str(key)))

    collect(nnx.to_pure_dict(sown), ())
    collect(recorded, ())
    return logits, captured


def _stringify_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _stringify_keys(v) for k, v in tree.items()}
    return tree


def count_params(params: Params, *, exclude_positions: bool = False) -> int:
    """Number of parameters; ``exclude_positions`` drops wpe, as nanoGPT reports it."""
    total = sum(x.size for x in jax.tree_util.tree_leaves(params))
    if exclude_positions:
        total -= params["wpe"]["embedding"].size
    return int(total)


def cross_entropy_loss(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy in float32.

    With the model's logits the padding ids, masked to :data:`PADDED_LOGIT`, take no probability: the
    loss is that over the ``cfg.vocab_size`` real ids.
    """
    chex.assert_rank(logits_BxTxV, 3)
    chex.assert_equal_shape_prefix((logits_BxTxV, targets_BxT), 2)
    with jax.named_scope("loss"):
        logits = logits_BxTxV.astype(jnp.float32)
        log_z = jax.nn.logsumexp(logits, axis=-1)
        true_logit = jnp.take_along_axis(logits, targets_BxT[..., None], axis=-1)[..., 0]
        return jnp.mean(log_z - true_logit)
