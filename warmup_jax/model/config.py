"""The GPT model's hyperparameters."""

from __future__ import annotations

import dataclasses

from warmup_jax.errors import ConfigError, check_choice, check_range

DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """GPT-2 shape and numerics.

    The defaults are GPT-2 124M as nanoGPT trains it (the paper's model): no biases, exact GELU,
    Pre-LN, vocabulary padded to a multiple of 64 (50257 -> 50304). The padding ids exist only in the
    embedding table and the logits' shape: the model masks their logits (see ``warmup_jax.model.gpt``).
    """

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024  # size of the learned position table = longest context
    vocab_size: int = 0  # 0: taken from the tokenizer at run time; ids >= vocab_size get masked logits
    vocab_multiple: int = 64  # the embedding is padded to a multiple of this (GPU-friendly)
    use_bias: bool = False
    dropout: float = 0.0
    norm_position: str = "pre"  # "pre" (GPT-2, nanoGPT) or "post" (original Transformer)
    gelu_approximate: bool = False  # nanoGPT: exact GELU; Hugging Face GPT-2: tanh approximation
    layer_norm_epsilon: float = 1e-5
    init_std: float = 0.02
    compute_dtype: str = "float32"  # activations and matmuls; "bfloat16" on TPU/GPU
    param_dtype: str = "float32"
    attention_implementation: str = "auto"  # "auto" | "xla" | "cudnn" (jax.nn.dot_product_attention)
    # Store the blocks stacked (leading layer axis, params["blocks"]["attn"]["qkv"]["kernel"] of shape
    # (n_layer, in, out)) and run them with lax.scan: compile time independent of depth.
    scan_layers: bool = False

    def padded_vocab_size(self, vocab_size: int | None = None) -> int:
        vocab = vocab_size if vocab_size is not None else self.vocab_size
        return -(-vocab // self.vocab_multiple) * self.vocab_multiple

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            check_range(f"model.{name}", getattr(self, name), low=1)
        check_range("model.vocab_multiple", self.vocab_multiple, low=1, high=65536)
        check_range("model.vocab_size", self.vocab_size, low=0)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                "allowed: n_embd a multiple of n_head"
            )
        check_range("model.dropout", self.dropout, low=0.0, high=1.0, high_inclusive=False)
        check_range("model.init_std", self.init_std, low=0.0, low_inclusive=False)
        check_range("model.layer_norm_epsilon", self.layer_norm_epsilon, low=0.0, low_inclusive=False)
        check_choice("model.norm_position", self.norm_position, ("pre", "post"))
        check_choice("model.compute_dtype", self.compute_dtype, DTYPES)
        check_choice("model.param_dtype", self.param_dtype, DTYPES)
        check_choice("model.attention_implementation", self.attention_implementation, ("auto", "xla", "cudnn"))
