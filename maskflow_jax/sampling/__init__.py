"""Samplers (MGM, FM), their schedules, and chunk-wise long-video rollout (docs/method.md §6, §12)."""
