"""tinylazy: a small, readable deep-learning engine on NumPy and CuPy, with lazy parameters."""
import glob
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_kernels(build_py):
    """Ship the CUDA sources of kernels/ inside the installed package, as tinylazy/kernels/*.cu."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "tinylazy", "kernels")
        os.makedirs(target, exist_ok=True)
        for path in [p for ext in ("*.cu", "*.cuh", "*.md") for p in glob.glob(os.path.join(HERE, "kernels", ext))]:
            shutil.copy(path, target)


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
    packages=find_packages(include=["tinylazy", "tinylazy.*"]) + ["tinylazy.data"],
    package_data={"tinylazy.data": ["*.gz", "*.txt"]},
    include_package_data=True,
    install_requires=["numpy>=1.26"],
    extras_require={
        "cuda": ["cupy-cuda13x"],
        "cuda12": ["cupy-cuda12x"],
        "safetensors": ["safetensors>=0.4"],
        "test": ["pytest>=7", "pytest-benchmark>=4", "hypothesis>=6", "safetensors>=0.4"],
        "bench": ["pytest-benchmark>=4", "threadpoolctl>=3"],
        "mpi": ["mpi4py>=4", "mpich"],          # tinylazy.distributed: mpiexec and an MPI library, from wheels
    },
    cmdclass={"build_py": build_py_with_kernels},
)
