"""Build of the psl package and its native extension psl._C.

The CPU kernels are always built. The CUDA kernels are added when torch sees a
CUDA device or FORCE_CUDA=1 is set (compile checks on machines without a GPU
need CUDA_HOME pointing at the toolkit root and TORCH_CUDA_ARCH_LIST).

Install with `pip install --no-build-isolation .`: the extension must be built
against the torch that is already installed, not a fresh copy in an isolated
build environment.
"""

import glob
import os
from pathlib import Path

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = Path(__file__).parent
CSRC = "csrc"


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


def version() -> str:
    namespace: dict = {}
    exec((ROOT / "psl" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


def extension():
    with_cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA", "0") == "1"
    sources = sorted(
        glob.glob(f"{CSRC}/*.cpp")
        + glob.glob(f"{CSRC}/ops/*.cpp")
        + glob.glob(f"{CSRC}/cpu/*.cpp")
        + glob.glob(f"{CSRC}/autocast/*.cpp")
    )
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp"]
    # ATen's parallel_for uses OpenMP in the PyPI builds; link the same runtime.
    link_flags = ["-fopenmp"]
    if os.environ.get("PSL_DEBUG", "0") == "1":
        cxx_flags = ["-O0", "-g", "-std=c++17", "-fopenmp"]
    kwargs = dict(
        name="psl._C",
        sources=sources,
        include_dirs=[str(ROOT / CSRC)],
        extra_link_args=link_flags,
    )
    if with_cuda:
        kwargs["sources"] += sorted(glob.glob(f"{CSRC}/cuda/*.cu"))
        kwargs["define_macros"] = [("PSL_WITH_CUDA", None)]
        kwargs["extra_compile_args"] = {
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-std=c++17", "-lineinfo"],
        }
        return CUDAExtension(**kwargs)
    kwargs["extra_compile_args"] = {"cxx": cxx_flags}
    return CppExtension(**kwargs)


setup(
    name="psl",
    version=version(),
    description="Pseudo strong labels for large-scale weakly supervised audio tagging",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["psl", "psl.*"]),
    package_data={"psl": ["resources/*"]},
    # The experiment configs, found by psl.config.experiments_dir() in a non-editable install.
    data_files=[("share/psl/experiments", sorted(glob.glob("experiments/*.yaml")))],
    install_requires=read_requirements("requirements.txt"),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)},
    entry_points={"console_scripts": ["psl = psl.cli:run"]},
    zip_safe=False,
)
