"""pytest plugin for tests/fake_cupy: small blocks and grids, so the CPU emulator keeps up; and
the stand-in's cuBLAS calls for scratchcnn.graph."""

import cupy
from scratchcnn import graph, kernels

graph._load_cublas = lambda: cupy.cublas_library

kernels.BLOCK = cupy.EMU_BLOCK
kernels.MAX_BLOCKS = 4
kernels.MAX_GRID_Y = 3  # the per-pixel kernels' loops over images go round too


def _two_chunks(rows):
    per = -(-rows // 2)
    return -(-rows // per), per


kernels._chunks = _two_chunks
_plan_init = kernels.SgdPlan.__init__


def _few_parts(self, sizes, decayed):
    _plan_init(self, sizes, decayed)
    self.parts = min(self.parts, 3)
    self.partial = cupy.empty(self.n_segments * self.parts, dtype="float64")


kernels.SgdPlan.__init__ = _few_parts
