"""Discrete flow matching with frame-level masking: kappa schedules, corruption, losses (SPEC §3)."""
