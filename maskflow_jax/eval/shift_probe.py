"""Moved to scripts/shift_probe.py (a research probe, not library code): `python scripts/shift_probe.py ...`.

Temporary forwarding stub, kept only so `python -m maskflow_jax.eval.shift_probe build|check ...` keeps
working for runs already under way; it imports nothing from the library and will be deleted.
"""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "shift_probe.py"),
                   run_name="__main__")
