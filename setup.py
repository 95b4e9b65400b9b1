"""Build the Cython kernels in cnnkit/_ext, with OpenMP when the compiler supports it."""
import glob
import os
import platform
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def openmp_flags():
    """Return (compile, link) flags that build an OpenMP program here, or ([], []) if none do."""
    if os.environ.get("CNNKIT_NO_OPENMP"):
        return [], []
    flags = ["/openmp"] if sys.platform == "win32" else ["-fopenmp"]
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=flags)
        except (CompileError, LinkError):
            print("cnnkit: no OpenMP support found; building serial kernels")
            return [], []
    return flags, ([] if sys.platform == "win32" else flags)


def x86_gcc():
    """Whether the compiler takes GCC's flags for x86-64 (GCC or clang, not MSVC)."""
    return sys.platform != "win32" and platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


# modules built for a wider instruction set than the baseline, chosen at run time (cnnkit/fast/conv.py)
INSTRUCTION_SETS = {
    "winograd_avx2": ["-mavx2"],
    "direct_avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512cd", "-mavx512dq", "-mavx512vl"],
}

compile_flags, link_flags = openmp_flags()
extensions = [
    Extension(
        f"cnnkit._ext.{name}",
        [f"cnnkit/_ext/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # no errno from sqrt and friends (the kernels never read it): GCC then vectorises their loops
        extra_compile_args=(["-O3", "-fno-math-errno"] * (sys.platform != "win32") + compile_flags
                            + INSTRUCTION_SETS.get(name, [])),
        extra_link_args=link_flags,
    )
    for name in sorted(os.path.basename(p)[:-4] for p in glob.glob("cnnkit/_ext/*.pyx"))
    if name not in INSTRUCTION_SETS or x86_gcc()
]

setup(ext_modules=cythonize(extensions, language_level=3))
