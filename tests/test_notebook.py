"""notebooks/quickstart.ipynb runs top to bottom on a finished (smoke) run: its code cells are
executed in order in one namespace, as a kernel would."""

import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_notebook_runs_top_to_bottom(smoke_run, monkeypatch):
    cfg, workdir, _ = smoke_run
    monkeypatch.setenv("MASKFLOW_WORKDIR", workdir)
    nb = json.load(open(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 4
    namespace = {}
    for i, code in enumerate(cells):
        exec(compile(code, f"quickstart.ipynb[code cell {i}]", "exec"), namespace)  # noqa: S102
    video = namespace["video"]
    assert video.dtype == np.uint8
    assert video.shape == (2, cfg.sampling.horizon, cfg.data.resize_to, cfg.data.resize_to, 3)
    assert sum(namespace["chunks"]) == cfg.sampling.horizon - cfg.sampling.context
    assert os.path.getsize(namespace["gif"]) > 0 and os.path.getsize(namespace["grid"]) > 0
