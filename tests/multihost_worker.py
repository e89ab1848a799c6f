"""One process of the two-process CPU test (tests/test_multihost.py); not collected by pytest.

usage: python multihost_worker.py PROCESS_ID PORT WORKDIR [mismatch]
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid)

import grain  # noqa: E402
import numpy as np  # noqa: E402
from factories import structured_tokens, tiny_config  # noqa: E402

from maskflow_jax import runtime  # noqa: E402
from maskflow_jax.parallel.mesh import make_mesh  # noqa: E402
from maskflow_jax.train import loop  # noqa: E402

cfg = tiny_config(train__steps=3, train__ckpt_every=3)
cfg.mesh.shape = (-1, 1, 1)
if len(sys.argv) > 4 and pid == 1:
    cfg.train.lr = 1.0  # a host started with another config
runtime.check_hosts_agree("config", cfg.to_dict())
data = structured_tokens(32, cfg.data.frames, 4, cfg.tokenizer.n_embed)
ds = grain.MapDataset.source(list(data)).shuffle(seed=0).repeat()[pid::2].map(lambda x: {"tokens": x}).batch(4)
state = loop.train_denoiser(cfg, workdir, batches=iter(ds.to_iter_dataset()), mesh=make_mesh(cfg.mesh))
params = jax.tree.leaves(state.params)
local = [np.asarray(p.addressable_data(0)) for p in params]
print("RESULT " + json.dumps({"pid": pid, "step": int(state.step), "sums": [float(x.sum()) for x in local]}))
