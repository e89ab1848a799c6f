"""Discrete flow matching with frame-level masking: kappa schedules, corruption, losses (docs/method.md §2)."""
