"""Data: the built-in worlds, DMLab / video-folder / HDF5 readers, ArrayRecord records, the loader.

maze.py, topdown.py (generators) -> dmlab.py, video_folder.py (validated readers) -> records.py
(ArrayRecord) -> loader.py (grain: shuffle, per-host shard, clip crop/resize, batch, global jax.Array);
tokens.py (the token cache and its training iterator); heldout.py (the held-out videos, tokens and
actions that sampling and evaluation condition on and compare with).
"""
