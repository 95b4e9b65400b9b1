"""show_config(): what cnnkit runs on here."""
import numpy as np
from threadpoolctl import threadpool_info

from cnnkit import _backend, _runtime
from cnnkit._version import __version__


def config():
    """Dict describing version, backends, OpenMP, kernel threads, the Winograd and direct builds and the BLAS in
    use."""
    blas = [
        {"library": p.get("internal_api"), "version": p.get("version"), "threads": p.get("num_threads"),
         "path": p.get("filepath")}
        for p in threadpool_info() if p.get("user_api") == "blas"
    ]
    return {
        "cnnkit": __version__,
        "numpy": np.__version__,
        "backends available": ", ".join(_backend.available_backends()),
        "backend active": _backend.get_backend(),
        "openmp": "yes" if _runtime.openmp_enabled() else "no",
        "kernel threads": _runtime.get_num_threads(),
        "winograd kernels": _conv_build("WINOGRAD_BUILD"),
        "direct kernels": _conv_build("DIRECT_BUILD"),
        "blas": blas,
    }


def _conv_build(name):
    """Which build of the Winograd (name WINOGRAD_BUILD: "AVX2", "baseline") or direct (DIRECT_BUILD: "AVX-512")
    kernels the fast backend runs, or "none"."""
    if "fast" not in _backend.available_backends():
        return "none"
    from cnnkit.fast import conv

    return getattr(conv, name)


def show_config():
    """Print version, backends available and active, OpenMP, kernel threads and BLAS."""
    info = config()
    blas = info.pop("blas")
    for key, value in info.items():
        print(f"{key + ':':<20}{value}")
    if not blas:
        print(f"{'blas:':<20}not detected")
    for lib in blas:
        print(f"{'blas:':<20}{lib['library']} {lib['version']} ({lib['threads']} threads) {lib['path']}")
