// CUDA C kernels for scratchcnn's CuPy path (float32, NHWC, C-contiguous arrays).
//
// Each replaces a chain of CuPy calls (one launch per call) with one or two launches.
// kernels.py compiles this file with CuPy's RawModule and launches the kernels; the NumPy
// code in layers.py and training.py is the reference each is tested against
// (tests/test_cupy.py). Every reduction runs in a fixed order, so results do not change
// from run to run. Compile-check without a GPU:
//     python ../shared/tools/nvrtc_check.py workflow/scratchcnn/kernels.cu

#ifndef BLOCK
#define BLOCK 256  // threads per block; a power of two (kernels.py passes the same value)
#endif

// Sum of one value per thread over the block, as a fixed-order tree: every thread gets it.
template <typename T>
__device__ T block_sum(T v, T* shm) {
    const int t = threadIdx.x;
    shm[t] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if (t < s) shm[t] += shm[t + s];
        __syncthreads();
    }
    const T total = shm[0];
    __syncthreads();  // shm may be reused afterwards
    return total;
}

// --------------------------------------------------------------------------------------
// Clip + L2 + SGD over every parameter array at once (training.FlatSGD).
//
// The parameters lie back to back in one flat buffer p, their gradients in g; segment s
// is [seg[s], seg[s + 1]). For segment s the gradient is gt = g + r_s * p (r_s = reg where
// decayed[s], else 0), and the update is p -= scale_s * gt with
// scale_s = lr * clip / max(||gt||, clip), or lr when clip <= 0 (no clipping).
// Grid: (parts, number of segments); block (x, s) covers a strided share of segment s.

// Pass 1: partial[s * parts + x] = the share of ||gt||^2 that block (x, s) covers.
extern "C" __global__ void sgd_sumsq(const float* __restrict__ p, const float* __restrict__ g,
                                     const long long* __restrict__ seg,
                                     const int* __restrict__ decayed, float reg,
                                     double* __restrict__ partial) {
    __shared__ double shm[BLOCK];
    const int s = blockIdx.y;
    const float r = decayed[s] ? reg : 0.0f;
    const long long end = seg[s + 1];
    const long long stride = (long long)gridDim.x * BLOCK;
    double acc = 0.0;
    for (long long i = seg[s] + (long long)blockIdx.x * BLOCK + threadIdx.x; i < end; i += stride) {
        const float gt = __fadd_rn(g[i], __fmul_rn(r, p[i]));  // rounded as NumPy's g + reg * p
        acc += (double)gt * (double)gt;
    }
    const double total = block_sum(acc, shm);
    if (threadIdx.x == 0) partial[s * gridDim.x + blockIdx.x] = total;
}

// Pass 2: each block adds up its segment's partial sums (same order in every block) and
// updates its share of the segment.
extern "C" __global__ void sgd_apply(float* __restrict__ p, const float* __restrict__ g,
                                     const long long* __restrict__ seg,
                                     const int* __restrict__ decayed, float reg,
                                     const double* __restrict__ partial, int parts, float lr,
                                     float clip) {
    __shared__ float scale_s;
    const int s = blockIdx.y;
    if (threadIdx.x == 0) {
        float scale = lr;
        if (clip > 0.0f) {
            double sq = 0.0;
            for (int b = 0; b < parts; ++b) sq += partial[s * parts + b];
            const double norm = sqrt(sq);
            scale = (float)((double)lr * (double)clip / (norm > (double)clip ? norm : (double)clip));
        }
        scale_s = scale;
    }
    __syncthreads();
    const float scale = scale_s;
    const float r = decayed[s] ? reg : 0.0f;
    const long long end = seg[s + 1];
    const long long stride = (long long)gridDim.x * BLOCK;
    for (long long i = seg[s] + (long long)blockIdx.x * BLOCK + threadIdx.x; i < end; i += stride) {
        const float pi = p[i];
        const float gt = __fadd_rn(g[i], __fmul_rn(r, pi));
        p[i] = __fsub_rn(pi, __fmul_rn(scale, gt));
    }
}

// --------------------------------------------------------------------------------------
// Softmax cross-entropy of logits (n, k) and int64 labels y (n,), one block:
// loss[0] = mean over rows of -log softmax(row)[y]; dlogits = (softmax - onehot(y)) / n
// when want_grad; correct[0] += rows whose first largest logit is at y when want_correct.
// A label outside [0, k) has no target (zero loss, no one-hot), as layers.one_hot gives.
extern "C" __global__ void softmax_xent(const float* __restrict__ logits,
                                        const long long* __restrict__ y, int n, int k,
                                        float* __restrict__ loss, float* dlogits, int want_grad,
                                        long long* correct, int want_correct) {
    __shared__ double shm[BLOCK];
    __shared__ long long shc[BLOCK];
    double acc = 0.0;
    long long hits = 0;
    for (int r = threadIdx.x; r < n; r += BLOCK) {
        const float* row = logits + (long long)r * k;
        float mx = row[0];
        int arg = 0;
        for (int j = 1; j < k; ++j) {
            if (row[j] > mx) {
                mx = row[j];
                arg = j;
            }
        }
        float sum = 0.0f;
        for (int j = 0; j < k; ++j) sum += expf(row[j] - mx);
        const float lse = logf(sum);
        const long long label = y[r];
        if (label >= 0 && label < k) acc -= (double)((row[label] - mx) - lse);
        hits += (label == (long long)arg);
        if (want_grad) {
            float* drow = dlogits + (long long)r * k;
            for (int j = 0; j < k; ++j) {
                const float target = (j == label) ? 1.0f : 0.0f;
                drow[j] = (expf((row[j] - mx) - lse) - target) / (float)n;
            }
        }
    }
    const double total = block_sum(acc, shm);
    const long long total_hits = block_sum(hits, shc);
    if (threadIdx.x == 0) {
        loss[0] = (float)(total / (double)n);
        if (want_correct) correct[0] += total_hits;
    }
}

// --------------------------------------------------------------------------------------
// im2col with the zero padding folded in: x (n, h, w, c) -> cols (n, ho, wo, kh, kw, c),
// cols[b, oh, ow, i, j, ch] = x[b, oh * stride + i - pad, ow * stride + j - pad, ch], or 0
// outside x. One thread per element of cols.
extern "C" __global__ void im2col_pad(const float* __restrict__ x, float* __restrict__ cols,
                                      int n, int h, int w, int c, int kh, int kw, int stride,
                                      int pad, int ho, int wo) {
    const long long total = (long long)n * ho * wo * kh * kw * c;
    for (long long idx = (long long)blockIdx.x * BLOCK + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * BLOCK) {
        long long t = idx;
        const int ch = (int)(t % c);
        t /= c;
        const int j = (int)(t % kw);
        t /= kw;
        const int i = (int)(t % kh);
        t /= kh;
        const int ow = (int)(t % wo);
        t /= wo;
        const int oh = (int)(t % ho);
        const long long b = t / ho;
        const int ih = oh * stride + i - pad;
        const int iw = ow * stride + j - pad;
        float v = 0.0f;
        if (ih >= 0 && ih < h && iw >= 0 && iw < w) v = x[((b * h + ih) * w + iw) * c + ch];
        cols[idx] = v;
    }
}

// col2im as a gather (the adjoint of im2col_pad): each thread owns one pixel of
// dx (n, h, w, c) and adds the window entries that read it, kernel offsets in row-major
// order, as layers.col2im does. No atomics, so the sum is the same on every run.
extern "C" __global__ void col2im_gather(const float* __restrict__ dcols, float* __restrict__ dx,
                                         int n, int h, int w, int c, int kh, int kw, int stride,
                                         int pad, int ho, int wo) {
    const long long total = (long long)n * h * w * c;
    for (long long idx = (long long)blockIdx.x * BLOCK + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * BLOCK) {
        long long t = idx;
        const int ch = (int)(t % c);
        t /= c;
        const int iw = (int)(t % w);
        t /= w;
        const int ih = (int)(t % h);
        const long long b = t / h;
        float acc = 0.0f;
        for (int i = 0; i < kh; ++i) {
            const int dh = ih + pad - i;  // = oh * stride for the window that reads (ih, iw) at i
            if (dh < 0 || dh % stride != 0) continue;
            const int oh = dh / stride;
            if (oh >= ho) continue;
            for (int j = 0; j < kw; ++j) {
                const int dw = iw + pad - j;
                if (dw < 0 || dw % stride != 0) continue;
                const int ow = dw / stride;
                if (ow >= wo) continue;
                acc += dcols[((((b * ho + oh) * wo + ow) * kh + i) * kw + j) * c + ch];
            }
        }
        dx[idx] = acc;
    }
}
