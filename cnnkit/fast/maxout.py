"""Maxout on the compiled affine op: cnnkit.reference.maxout's definition with fast products."""
from cnnkit.fast.affine import affine_backward, affine_forward
from cnnkit.reference.maxout import maxout_ops

maxout_forward, maxout_backward = maxout_ops(affine_forward, affine_backward)
