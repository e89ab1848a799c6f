"""Orbax checkpoints: a train state, its metadata (config, step, state version) and the position
of the data iterator, saved together so a resumed run continues exactly where it stopped.

The state's owner gives its version (`version=`: train/state.py for the denoiser, tokenizer/train.py
for the tokenizer); it is saved in the metadata and checked on restore, so this module knows no state type.
It knows one convention: a state's `params` and `ema_params` fields are saved as their own items
(`params`, `ema`) beside the rest of the state (`state`: step, optimizer state, rng, ...). A resumed run
restores all three; inference restores one parameter item (`restore_params`) and never needs the
optimizer's shapes.

Restore always goes onto a sharded abstract target, so a checkpoint written on 8 devices restores
on 1 device or another mesh layout. A damaged latest checkpoint falls back to the previous one.
"""

import os

import jax
import orbax.checkpoint as ocp
from absl import logging

PARAM_ITEMS = {"params": "params", "ema_params": "ema"}  # state field -> the item it is saved as


class CheckpointError(RuntimeError):
    """No usable checkpoint could be restored; the message lists what was tried."""


def make_manager(directory, keep=3, async_save=True):
    """A CheckpointManager over `directory` (created if missing) keeping the newest `keep` steps."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
    return ocp.CheckpointManager(directory, options=options)


def abstract_target(abstract_state, shardings):
    """ShapeDtypeStructs carrying the target shardings (the restore target for any mesh)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


def single_device_target(abstract):
    """The restore target of `abstract` (a tree of shapes) on this host's first device (inference)."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one), abstract)


def _grain_iterator(it):
    """The grain iterator inside `it` (wrappers expose the iterator they wrap as `.wrapped`)."""
    import grain  # local import: only needed when a data iterator is checkpointed

    kinds = (grain.DatasetIterator, grain.DataLoaderIterator)
    while not isinstance(it, kinds) and hasattr(it, "wrapped"):
        it = it.wrapped
    if not isinstance(it, kinds):
        raise TypeError(
            f"cannot checkpoint a data iterator of type {type(it).__name__}: expected a grain "
            "DatasetIterator/DataLoaderIterator, or a wrapper exposing it as `.wrapped`"
        )
    return it


def _split(state):
    """{item: pytree}: the state without its parameter fields, and each parameter field on its own."""
    fields = {f: getattr(state, f) for f in PARAM_ITEMS if getattr(state, f, None) is not None}
    items = {PARAM_ITEMS[f]: tree for f, tree in fields.items()}
    items["state"] = state.replace(**dict.fromkeys(fields)) if fields else state
    return items


def save(manager, step, state, meta, data_iter=None, force=False, version=None):
    """Saves state (StandardSave; `params`/`ema_params` as their own items), meta (JSON: config, step,
    the state's `version`) and the data iterator."""
    items = {name: ocp.args.StandardSave(tree) for name, tree in _split(state).items()}
    items["meta"] = ocp.args.JsonSave({**meta, "step": int(step), "state_version": version})
    if data_iter is not None:
        import grain

        items["data"] = grain.checkpoint.CheckpointSave(_grain_iterator(data_iter))
    return manager.save(int(step), args=ocp.args.Composite(**items), force=force)


def _restore_newest(manager, trees, data_iter, step, version):
    """(step, {item: restored}, meta) of the newest readable checkpoint holding `trees` ({item: target})."""
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
        if int(step) not in steps:
            raise CheckpointError(f"no checkpoint step {step} in {manager.directory}; saved steps: {sorted(steps)}")
        steps = [int(step)]
    if not steps:
        return None
    errors = []
    for step in steps:
        items = {name: ocp.args.StandardRestore(target) for name, target in trees.items()}
        if data_iter is not None:
            import grain

            items["data"] = grain.checkpoint.CheckpointRestore(_grain_iterator(data_iter))
        try:
            # The metadata first: a checkpoint of another state version (another layout) is named as such.
            meta = dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
            if version is not None and meta.get("state_version") != version:
                raise CheckpointError(
                    f"checkpoint step {step} in {manager.directory} has state_version "
                    f"{meta.get('state_version')} but this code writes {version}; "
                    "restore it with the code version that wrote it or start a new workdir"
                )
            restored = manager.restore(step, args=ocp.args.Composite(**items))
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001 - any read failure means "damaged", try older ones
            logging.warning(
                "checkpoint step %d in %s is unreadable (%s: %s); trying the previous one",
                step,
                manager.directory,
                type(err).__name__,
                err,
            )
            errors.append(f"step {step}: {type(err).__name__}: {err}")
            continue
        if errors:
            logging.warning("restored step %d after skipping damaged checkpoints: %s", step, errors)
        return step, {name: restored[name] for name in trees}, meta
    raise CheckpointError(f"no readable checkpoint in {manager.directory}; tried: " + "; ".join(errors))


def restore_latest(manager, target, data_iter=None, step=None, version=None):
    """Restores the newest readable checkpoint onto `target` (a whole state); returns (step, state, meta)
    or None when the directory holds no checkpoint.

    If the newest step cannot be read (a truncated or damaged save), logs a warning and tries the
    previous one, and so on. Raises CheckpointError if steps exist but none is readable, or if the
    saved state version differs from `version` (not checked when None). step: restore exactly this step (CheckpointError
    naming the saved steps if it is not on disk or unreadable).
    """
    found = _restore_newest(manager, _split(target), data_iter, step, version)
    if found is None:
        return None
    step, items, meta = found
    fields = {f: items[name] for f, name in PARAM_ITEMS.items() if name in items}
    return step, items["state"].replace(**fields) if fields else items["state"], meta


def restore_params(manager, target, item="ema", step=None, version=None):
    """Restores one parameter item (`ema` or `params`) onto `target` (its abstract tree), without the
    optimizer state; returns (step, params, meta) or None. Same fallback and errors as restore_latest."""
    if item not in PARAM_ITEMS.values():
        raise ValueError(f"item={item!r}: a checkpoint's parameter items are {sorted(PARAM_ITEMS.values())}")
    found = _restore_newest(manager, {item: target}, None, step, version)
    return None if found is None else (found[0], found[1][item], found[2])
