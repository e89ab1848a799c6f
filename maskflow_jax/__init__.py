"""maskflow_jax: MaskFlow (discrete flow matching over VQ video tokens) in JAX/Flax."""

__version__ = "0.1.0"
