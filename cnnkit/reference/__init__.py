"""Pure-numpy reference ops: the canonical definition of every cnnkit op.

Callable directly whatever the active backend; they expect arguments already checked
by cnnkit.functional (pairs for kernel_size/stride/padding, matching float dtypes).
"""
from cnnkit.reference.im2col import col2im, im2col

__all__ = ["col2im", "im2col"]
