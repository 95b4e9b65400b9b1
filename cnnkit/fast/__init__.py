"""Fast ops on the Cython kernels in cnnkit._ext and BLAS; same signatures as cnnkit.reference.

Importing this module raises ImportError when the compiled extension is missing.
"""
from cnnkit.fast.im2col import col2im, im2col

__all__ = ["col2im", "im2col"]
