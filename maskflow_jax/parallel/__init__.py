"""Sharding as data: logical axis names, the device mesh, and shardings derived from them."""
