"""Samplers (MGM, FM), their schedules, and chunk-wise long-video rollout (SPEC §6, §12)."""
