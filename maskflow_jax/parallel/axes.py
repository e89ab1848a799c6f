"""Logical axis names used by every module, and the default logical -> mesh rules.

Modules annotate parameters (`nn.with_logical_partitioning`) and activations
(`nn.with_logical_constraint`) with these names only; which mesh axis each maps to is config
(`config.mesh.rules`), so the same model runs data-parallel, FSDP or tensor-parallel.
"""

# Activations
BATCH = "batch"  # clips (B); also B*F frames or B*N patch columns after folding
FRAMES = "frames"  # F
SEQ = "seq"  # patch tokens of a frame (N = H*W / p^2)
EMBED = "embed"  # model width D
HEADS = "heads"  # attention heads
KV = "kv"  # head dimension
MLP = "mlp"  # MLP hidden width (4D) and adaLN modulation outputs (6D)
VOCAB = "vocab"  # token vocabulary V (embedding rows, output head columns)
PATCH = "patch"  # flattened patch features (p*p*D/2) of the patch embedding
FREQ = "freq"  # sinusoidal frequency features of the time embedding
CONV_IN = "conv_in"  # tokenizer conv input channels
CONV_OUT = "conv_out"  # tokenizer conv output channels
LAYERS = "layers"  # the stacked block axis of nn.scan (model.scan_blocks); never sharded
