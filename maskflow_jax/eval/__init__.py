"""Evaluation: FVD with a Flax Inception-I3D under named protocols, PSNR / SSIM."""
