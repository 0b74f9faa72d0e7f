"""tinylazy: a small, readable deep-learning engine on NumPy and CuPy, with lazy parameters."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="tinylazy",
    version="0.1.0",
    description="A small, fast, readable deep-learning engine on NumPy/CuPy with lazy parameters",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # kernels/ (top level, where the CUDA sources are read) is installed as the data package tinylazy/kernels,
    # where tinylazy.cuda.kernel_dir() finds it; MANIFEST.in puts it (and the data) in the sdist as well.
    packages=find_packages(include=["tinylazy", "tinylazy.*"]) + ["tinylazy.data", "tinylazy.kernels"],
    package_dir={"tinylazy.kernels": "kernels"},
    package_data={"tinylazy.data": ["*.gz", "*.txt"], "tinylazy.kernels": ["*.cu", "*.cuh", "*.md"]},
    include_package_data=True,
    install_requires=["numpy>=1.26"],
    extras_require={
        # [ctk]: CuPy's extra that brings the CUDA 13 toolkit's wheels, NVRTC and the runtime headers among them
        # (cuda-toolkit[cublas,cudart,cufft,curand,cusolver,cusparse,nvrtc]==13.*), so the kernels compile
        # on a machine with only a driver.
        "cuda": ["cupy-cuda13x[ctk]"],
        "cuda12": ["cupy-cuda12x"],
        "safetensors": ["safetensors>=0.4"],
        "test": ["pytest>=7", "pytest-benchmark>=4", "hypothesis>=6", "safetensors>=0.4", "setuptools>=64", "wheel"],
        "bench": ["pytest-benchmark>=4", "threadpoolctl>=3"],
        "mpi": ["mpi4py>=4", "mpich"],          # tinylazy.distributed: mpiexec and an MPI library, from wheels
    },
)
