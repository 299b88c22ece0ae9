"""warmup_jax: reducing the need for learning-rate warmup in GPT training, in JAX."""

__version__ = "0.1.0"
