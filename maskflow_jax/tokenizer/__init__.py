"""VQ image tokenizer: the LDM/taming VQGAN family (ours to train, or the paper's vq-f8 imported)."""
