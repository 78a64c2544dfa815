// Runs the CUDA C kernels of workflow/scratchcnn/kernels.cu on the CPU, for tests without a GPU.
//
// One std::thread per CUDA thread and one block at a time: __shared__ variables become
// function statics (shared by the block's threads), __syncthreads() a std::barrier. Enough for
// kernels that use only threadIdx.x, blockIdx.x/y, gridDim and block-wide barriers. It checks
// indexing and arithmetic, not speed or races between blocks.
#pragma once
#include <barrier>
#include <cmath>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;
inline std::barrier<>* emu_barrier = nullptr;

#define __global__
#define __device__
#define __shared__ static
#define __restrict__

inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }

// kernel(args...) as CUDA's launch with kernelParams: args[i] points at the i-th argument
template <typename... P, std::size_t... I>
void emu_call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}

// Blocks run one at a time, in order, or in reverse order once emu_set_reverse_blocks(1) is
// called: on a GPU they run in any order and side by side, so no result may depend on it.
static bool emu_reverse_blocks = false;
extern "C" void emu_set_reverse_blocks(int on) { emu_reverse_blocks = on != 0; }

template <typename... P>
void emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, void** args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned iy = 0; iy < grid.y; ++iy) {
        const unsigned by = emu_reverse_blocks ? grid.y - 1 - iy : iy;
        for (unsigned ix = 0; ix < grid.x; ++ix) {
            const unsigned bx = emu_reverse_blocks ? grid.x - 1 - ix : ix;
            std::barrier<> bar(block.x);
            emu_barrier = &bar;
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < block.x; ++t) {
                threads.emplace_back([=] {
                    threadIdx = dim3{t, 0, 0};
                    blockIdx = dim3{bx, by, 0};
                    emu_call(kernel, args, std::index_sequence_for<P...>{});
                });
            }
            for (auto& th : threads) th.join();
        }
    }
}

#define EMU_EXPORT(name)                                                                    \
    extern "C" void emu_##name(unsigned gx, unsigned gy, unsigned bx, void** args) {       \
        emu_launch(name, dim3{gx, gy, 1}, dim3{bx, 1, 1}, args);                           \
    }
