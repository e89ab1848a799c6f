"""The discrete spatio-temporal Latte denoiser (docs/method.md §5)."""
