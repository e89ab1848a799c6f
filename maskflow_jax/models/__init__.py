"""The discrete spatio-temporal Latte denoiser (SPEC §4)."""
