"""The modes of `python -m maskflow_jax.main --mode=...`: one module per mode, each with `run(cfg, workdir)`.

A mode reads the config, calls library functions and writes or prints what the user asked for. The
layering rule (docs/design.md; tests/test_imports.py checks it): a mode imports library modules only,
never another mode, and no library module imports a mode, so what two modes share lives in the library.
"""
