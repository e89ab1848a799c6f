"""Data: the procedural maze, DMLab/HDF5 readers, ArrayRecord records and the grain pipeline.

maze.py (generator) -> dmlab.py (validated .npz reader) -> records.py (ArrayRecord) -> pipeline.py
(grain: shuffle, per-host shard, clip crop/resize, batch, global jax.Array).
"""
