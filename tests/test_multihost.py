"""Two real processes (jax.distributed on localhost, gloo collectives on CPU) train a few steps and
match one process with the same global batches; hosts with different configs are refused."""

import json
import os
import socket
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import structured_tokens, tiny_config

from maskflow_jax.parallel.mesh import make_mesh
from maskflow_jax.train.setup import build_trainer

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_pair(workdir, *extra):
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multihost_worker.py"), str(i), port, workdir, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("two-process run timed out")
        outs.append((p.returncode, out, err))
    return outs


def test_two_processes_match_one(tmp_path):
    outs = _run_pair(str(tmp_path / "mh"))
    if any("gloo" in err.lower() and rc != 0 and "not" in err.lower() for rc, _, err in outs):
        pytest.skip("this jaxlib has no gloo CPU collectives")
    for rc, out, err in outs:
        assert rc == 0, err[-3000:]
    results = [json.loads(line[7:]) for _, out, _ in outs for line in out.splitlines() if line.startswith("RESULT ")]
    assert sorted(r["pid"] for r in results) == [0, 1] and all(r["step"] == 3 for r in results)
    # Replicated parameters: both hosts hold the same values.
    np.testing.assert_allclose(results[0]["sums"], results[1]["sums"], rtol=1e-6)
    # One process with 4 devices and the same global batches (host 0's half, then host 1's).
    cfg = tiny_config()
    data = structured_tokens(32, cfg.data.frames, 4, cfg.tokenizer.n_embed)
    streams = [iter(grain.MapDataset.source(list(data)).shuffle(seed=0).repeat()[p::2].batch(4)) for p in range(2)]
    trainer = build_trainer(cfg, make_mesh(cfg.mesh, devices=jax.devices()[:4]))
    with jax.set_mesh(trainer.mesh):
        state = trainer.init(jax.random.key(0))
        for _ in range(3):
            batch = np.concatenate([next(s) for s in streams])
            state, _ = trainer.step(state, {"tokens": jax.device_put(jnp.asarray(batch), trainer.batch_sharding)})
    sums = [float(np.asarray(x).sum()) for x in jax.tree.leaves(state.params)]
    np.testing.assert_allclose(results[0]["sums"], sums, rtol=1e-4, atol=1e-5)
    assert os.path.isdir(tmp_path / "mh" / "checkpoints" / "3")


def test_hosts_with_different_configs_are_refused(tmp_path):
    outs = _run_pair(str(tmp_path / "bad"), "mismatch")
    assert all(rc != 0 for rc, _, _ in outs)
    assert any("processes disagree on the config" in err for _, _, err in outs)
