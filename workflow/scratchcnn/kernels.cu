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
static_assert(BLOCK > 0 && (BLOCK & (BLOCK - 1)) == 0, "block_sum's tree needs BLOCK a power of two");

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
// Clip + L2 + SGD over every parameter array at once (training.FlatSGD), and the step's loss.
//
// The parameters lie back to back in one flat buffer p, their gradients in g; segment s
// is [seg[s], seg[s + 1]). For segment s the gradient is gt = g + r_s * p (r_s = reg where
// decayed[s], else 0), and the update is p -= scale_s * gt with
// scale_s = lr * clip / max(||gt||, clip), or lr when clip <= 0 (no clipping).
// Grid: (parts, number of segments); block (x, s) covers a strided share of segment s.
// With want_sums the pair also keeps the epoch's sums that training.EpochSums holds:
// ce_sum += batch * data_loss and l2_sum += batch * reg / 2 * ||p||^2 over the decayed
// segments, before the update; each product is rounded to float as the NumPy reference rounds
// it, then added in double (the sums are float64). The L2 term's dot products and the sums'
// 0-d arithmetic would otherwise cost 15 launches a step.

// Pass 1: partial[s * parts + x] = the share of ||gt||^2 that block (x, s) covers, and
// wsq[s * parts + x] the share of ||p||^2 where decayed[s] (0 elsewhere).
extern "C" __global__ void sgd_sumsq(const float* __restrict__ p, const float* __restrict__ g,
                                     const long long* __restrict__ seg,
                                     const int* __restrict__ decayed, float reg,
                                     double* __restrict__ partial, double* __restrict__ wsq) {
    __shared__ double shm[BLOCK];
    const int s = blockIdx.y;
    const float r = decayed[s] ? reg : 0.0f;
    const long long end = seg[s + 1];
    const long long stride = (long long)gridDim.x * BLOCK;
    double acc = 0.0, wacc = 0.0;
    for (long long i = seg[s] + (long long)blockIdx.x * BLOCK + threadIdx.x; i < end; i += stride) {
        const float pi = p[i];
        const float gt = __fadd_rn(g[i], __fmul_rn(r, pi));  // rounded as NumPy's g + reg * p
        acc += (double)gt * (double)gt;
        wacc += (double)pi * (double)pi;
    }
    const double total = block_sum(acc, shm);
    const double wtotal = block_sum(decayed[s] ? wacc : 0.0, shm);
    if (threadIdx.x == 0) {
        partial[s * gridDim.x + blockIdx.x] = total;
        wsq[s * gridDim.x + blockIdx.x] = wtotal;
    }
}

// Pass 2: each block adds up its segment's partial sums (same order in every block) and
// updates its share of the segment; block (0, 0) adds the step to the epoch's sums (it reads
// wsq and data_loss, which no block of this launch writes).
extern "C" __global__ void sgd_apply(float* __restrict__ p, const float* __restrict__ g,
                                     const long long* __restrict__ seg,
                                     const int* __restrict__ decayed, float reg,
                                     const double* __restrict__ partial, int parts, float lr,
                                     float clip, const double* __restrict__ wsq,
                                     const float* __restrict__ data_loss, float batch,
                                     double* __restrict__ ce_sum, double* __restrict__ l2_sum,
                                     int want_sums) {
    __shared__ float scale_s;
    const int s = blockIdx.y;
    if (threadIdx.x == 0) {
        float scale = lr;
        if (clip > 0.0f) {
            double sq = 0.0;
            for (int b = 0; b < parts; ++b) sq += partial[s * parts + b];
            const double norm = sqrt(sq);
            // a NaN norm passes on (every entry NaN), as NumPy's maximum(norm, clip) does
            scale = (float)((double)lr * (double)clip / (!(norm <= (double)clip) ? norm : (double)clip));
        }
        scale_s = scale;
        if (want_sums && blockIdx.x == 0 && s == 0) {
            double w = 0.0;
            for (int b = 0; b < (int)gridDim.y * parts; ++b) w += wsq[b];
            // NumPy: reg_loss = float32(0.5 * reg) * float32(||W||^2), times the batch in float32
            const float l2 = __fmul_rn(0.5f * reg, (float)w);
            ce_sum[0] += (double)__fmul_rn(data_loss[0], batch);
            l2_sum[0] += (double)__fmul_rn(l2, batch);
        }
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
            // the first NaN wins, as NumPy's max and argmax let it: a diverged run's loss is NaN
            if (row[j] > mx || (row[j] != row[j] && mx == mx)) {
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
// The per-pixel kernels below run on a grid of (blocks over one image's elements, images):
// block row y takes images y, y + gridDim.y, ... and its blocks stride over that image, so
// the index arithmetic within an image stays 32-bit (a GPU has no integer divider: a 64-bit
// division is a long subroutine, a 32-bit one a few instructions). kernels.py checks that
// one image's elements fit in an int.

// im2col with the zero padding folded in: x (n, h, w, c) -> cols (n, ho, wo, kh, kw, c),
// cols[b, oh, ow, i, j, ch] = x[b, oh * stride + i - pad, ow * stride + j - pad, ch], or 0
// outside x. One thread per element of cols.
extern "C" __global__ void im2col_pad(const float* __restrict__ x, float* __restrict__ cols,
                                      int n, int h, int w, int c, int kh, int kw, int stride,
                                      int pad, int ho, int wo) {
    const int per_image = ho * wo * kh * kw * c;
    for (long long b = blockIdx.y; b < n; b += gridDim.y) {
        const float* xb = x + b * h * w * c;
        float* colsb = cols + b * per_image;
        for (int idx = blockIdx.x * BLOCK + threadIdx.x; idx < per_image; idx += gridDim.x * BLOCK) {
            int t = idx;
            const int ch = t % c;
            t /= c;
            const int j = t % kw;
            t /= kw;
            const int i = t % kh;
            t /= kh;
            const int ow = t % wo;
            const int oh = t / wo;
            const int ih = oh * stride + i - pad;
            const int iw = ow * stride + j - pad;
            float v = 0.0f;
            if (ih >= 0 && ih < h && iw >= 0 && iw < w) v = xb[(ih * w + iw) * c + ch];
            colsb[idx] = v;
        }
    }
}

// col2im as a gather (the adjoint of im2col_pad): each thread owns one pixel of
// dx (n, h, w, c) and adds the window entries that read it, kernel offsets in row-major
// order, as layers.col2im does. No atomics, so the sum is the same on every run.
extern "C" __global__ void col2im_gather(const float* __restrict__ dcols, float* __restrict__ dx,
                                         int n, int h, int w, int c, int kh, int kw, int stride,
                                         int pad, int ho, int wo) {
    const int per_image = h * w * c;
    for (long long b = blockIdx.y; b < n; b += gridDim.y) {
        for (int idx = blockIdx.x * BLOCK + threadIdx.x; idx < per_image; idx += gridDim.x * BLOCK) {
            int t = idx;
            const int ch = t % c;
            t /= c;
            const int iw = t % w;
            const int ih = t / w;
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
            dx[b * per_image + idx] = acc;
        }
    }
}

// --------------------------------------------------------------------------------------
// Batch norm + ReLU + max pooling, fused (layers.bn_relu_pool_forward/backward).
//
// x is the conv output (n, h, w, c), m = n * h * w rows of c channels. The pooled output
// out (n, ho, wo, c) is max over each size x size window (every `stride`) of
// relu((x - mean) * scale + beta), scale = gamma * inv_std; arg (uint8, like out) keeps the
// window offset i * size + j of the first maximum, which routes the gradient back.
// Per-channel sums use tiles of CT channels x BLOCK / CT row lanes (a warp reads CT
// consecutive channels of one row) over chunks of rows; each block writes its partial
// sums, and a per-channel pass adds them up in chunk order.

#define CT 32
#define LANES (BLOCK / CT)
static_assert(BLOCK % CT == 0, "BLOCK must be a multiple of CT");

// A tile's two partial column sums: each lane's (s, q) for its channel, added up in lane order
// and written as this row chunk's (blockIdx.y) entries of out_s and out_q (q not written where
// out_q is null). ss, sq: BLOCK doubles of shared memory.
__device__ void tile_partials(double s, double q, double* ss, double* sq, int c,
                              double* __restrict__ out_s, double* __restrict__ out_q) {
    const int t = threadIdx.x, cx = t % CT, lane = t / CT;
    const int ch = blockIdx.x * CT + cx;
    ss[t] = s;
    sq[t] = q;
    __syncthreads();
    if (lane == 0 && ch < c) {
        double S = 0.0, Q = 0.0;
        for (int k = 0; k < LANES; ++k) {
            S += ss[k * CT + cx];
            Q += sq[k * CT + cx];
        }
        out_s[blockIdx.y * (long long)c + ch] = S;
        if (out_q) out_q[blockIdx.y * (long long)c + ch] = Q;
    }
}

// partial sums of x and, when want_sq, x^2 per (row chunk, channel). Grid: (ceil(c / CT), chunks).
// Without want_sq these are layers.column_sum's partial sums (col_sum_finalize adds them up):
// CuPy's own reduction over the rows gives each block 32 columns (read in its _get_block_specs),
// so one block would sum all 65,536 rows of the first layer's 32 channels at batch 64.
extern "C" __global__ void bn_stats(const float* __restrict__ x, long long m, int c,
                                    long long rows_per_chunk, double* __restrict__ psum,
                                    double* __restrict__ psq, int want_sq) {
    __shared__ double ss[BLOCK];
    __shared__ double sq[BLOCK];
    const int t = threadIdx.x, cx = t % CT, lane = t / CT;
    const int ch = blockIdx.x * CT + cx;
    const long long r0 = blockIdx.y * rows_per_chunk;
    const long long r1 = r0 + rows_per_chunk < m ? r0 + rows_per_chunk : m;
    double s = 0.0, q = 0.0;
    if (ch < c) {
        for (long long r = r0 + lane; r < r1; r += LANES) {
            const double v = x[r * c + ch];
            s += v;
            q += v * v;
        }
    }
    tile_partials(s, q, ss, sq, c, psum, want_sq ? psq : nullptr);
}

// out[ch] = the column's partial sums from bn_stats added in chunk order, as float32.
// One thread per channel.
extern "C" __global__ void col_sum_finalize(const double* __restrict__ psum, int chunks, int c,
                                            float* __restrict__ out) {
    const int ch = blockIdx.x * BLOCK + threadIdx.x;
    if (ch >= c) return;
    double S = 0.0;
    for (int k = 0; k < chunks; ++k) S += psum[k * (long long)c + ch];
    out[ch] = (float)S;
}

// Per channel: the batch statistics (train) or the running ones, the updated running
// statistics, inv_std and scale. One thread per channel.
extern "C" __global__ void bn_finalize(const double* __restrict__ psum,
                                       const double* __restrict__ psq, int chunks, long long m,
                                       int c, const float* __restrict__ gamma,
                                       const float* __restrict__ rm, const float* __restrict__ rv,
                                       float momentum, float one_minus_momentum, float eps,
                                       int train, float* __restrict__ mean_out,
                                       float* __restrict__ inv_std_out,
                                       float* __restrict__ scale_out, float* __restrict__ rm_out,
                                       float* __restrict__ rv_out) {
    const int ch = blockIdx.x * BLOCK + threadIdx.x;
    if (ch >= c) return;
    float mean, var;
    if (train) {
        double S = 0.0, Q = 0.0;
        for (int k = 0; k < chunks; ++k) {
            S += psum[k * (long long)c + ch];
            Q += psq[k * (long long)c + ch];
        }
        const double dmean = S / (double)m;
        const double dvar = Q / (double)m - dmean * dmean;  // biased, as the reference
        mean = (float)dmean;
        var = (float)(dvar < 0.0 ? 0.0 : dvar);  // rounding's negatives to 0; a NaN stays (diverged)
        rm_out[ch] = __fadd_rn(__fmul_rn(momentum, rm[ch]), __fmul_rn(one_minus_momentum, mean));
        rv_out[ch] = __fadd_rn(__fmul_rn(momentum, rv[ch]), __fmul_rn(one_minus_momentum, var));
    } else {
        mean = rm[ch];
        var = rv[ch];
    }
    const float inv_std = 1.0f / sqrtf(__fadd_rn(var, eps));
    mean_out[ch] = mean;
    inv_std_out[ch] = inv_std;
    scale_out[ch] = __fmul_rn(gamma[ch], inv_std);
}

// The pooled output and, when want_arg, the offset of each window's first maximum.
// One thread per element of out.
extern "C" __global__ void bn_relu_pool_fwd(const float* __restrict__ x, int n, int h, int w,
                                            int c, int size, int stride, int ho, int wo,
                                            const float* __restrict__ mean,
                                            const float* __restrict__ scale,
                                            const float* __restrict__ beta,
                                            float* __restrict__ out, unsigned char* arg,
                                            int want_arg) {
    const int per_image = ho * wo * c;
    for (long long b = blockIdx.y; b < n; b += gridDim.y) {
        for (int i = blockIdx.x * BLOCK + threadIdx.x; i < per_image; i += gridDim.x * BLOCK) {
            int t = i;
            const int ch = t % c;
            t /= c;
            const int ow = t % wo;
            const int oh = t / wo;
            const long long idx = b * per_image + i;
            const float mu = mean[ch], sc = scale[ch], be = beta[ch];
            float best = 0.0f;
            int best_at = 0;
            for (int k = 0; k < size * size; ++k) {
                const int ih = oh * stride + k / size, iw = ow * stride + k % size;
                const float v = x[((b * h + ih) * w + iw) * c + ch];
                float y = __fadd_rn(__fmul_rn(__fsub_rn(v, mu), sc), be);
                // NaN passes ReLU and wins the window, as xp.maximum lets it: a diverged run must
                // show NaN in its loss, not go on with the NaN read as 0
                y = (y > 0.0f || y != y) ? y : 0.0f;
                if (k == 0 || y > best || (y != y && best == best)) {  // strictly greater: the first maximum wins a tie
                    best = y;
                    best_at = k;
                }
            }
            out[idx] = best;
            if (want_arg) arg[idx] = (unsigned char)best_at;
        }
    }
}

// Backward, pass 1: per (chunk of pooled rows, channel) the sums of g and g * (x - mean) at
// each window's maximum, g = dout where the pooled output is positive (ReLU), else 0.
// Grid: (ceil(c / CT), chunks), rows = n * ho * wo pooled positions.
extern "C" __global__ void bn_relu_pool_bwd_stats(
    const float* __restrict__ dout, const float* __restrict__ out,
    const unsigned char* __restrict__ arg, const float* __restrict__ x,
    const float* __restrict__ mean, int n, int h, int w, int c, int size, int stride, int ho,
    int wo, long long rows_per_chunk, double* __restrict__ pd, double* __restrict__ pdc) {
    __shared__ double ss[BLOCK];
    __shared__ double sq[BLOCK];
    const int t = threadIdx.x, cx = t % CT, lane = t / CT;
    const int ch = blockIdx.x * CT + cx;
    const long long rows = (long long)n * ho * wo;
    const long long r0 = blockIdx.y * rows_per_chunk;
    const long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double s = 0.0, q = 0.0;
    if (ch < c) {
        const float mu = mean[ch];
        for (long long r = r0 + lane; r < r1; r += LANES) {
            const long long e = r * c + ch;
            if (!(out[e] > 0.0f)) continue;
            const int ri = (int)r;  // kernels.py checks that the pooled rows fit in an int: 32-bit division
            const int ow = ri % wo, oh = (ri / wo) % ho;
            const long long b = ri / (wo * ho);
            const int k = arg[e];
            const int ih = oh * stride + k / size, iw = ow * stride + k % size;
            const double g = dout[e];
            s += g;
            q += g * (double)__fsub_rn(x[((b * h + ih) * w + iw) * c + ch], mu);
        }
    }
    tile_partials(s, q, ss, sq, c, pd, pdc);
}

// Backward, pass 2, per channel: dbeta = sum g, dgamma = sum g * (x - mean) * inv_std, and the
// two coefficients of dx through the batch statistics (zero in evaluation mode).
extern "C" __global__ void bn_grad_finalize(const double* __restrict__ pd,
                                            const double* __restrict__ pdc, int chunks,
                                            long long m, int c,
                                            const float* __restrict__ inv_std,
                                            const float* __restrict__ scale, int train,
                                            float* __restrict__ dgamma, float* __restrict__ dbeta,
                                            float* __restrict__ k1, float* __restrict__ k2) {
    const int ch = blockIdx.x * BLOCK + threadIdx.x;
    if (ch >= c) return;
    double D = 0.0, DC = 0.0;
    for (int k = 0; k < chunks; ++k) {
        D += pd[k * (long long)c + ch];
        DC += pdc[k * (long long)c + ch];
    }
    const double is = inv_std[ch], sc = scale[ch];
    dbeta[ch] = (float)D;
    dgamma[ch] = __fmul_rn((float)DC, inv_std[ch]);
    k1[ch] = train ? (float)(sc * is * is * DC / (double)m) : 0.0f;
    k2[ch] = train ? (float)(sc * D / (double)m) : 0.0f;
}

// Backward, pass 3: dx = d * scale - (x - mean) * k1 - k2 per pixel, d gathered from the
// windows whose maximum the pixel is (offsets in row-major order, as the reference adds them).
extern "C" __global__ void bn_relu_pool_bwd_dx(
    const float* __restrict__ dout, const float* __restrict__ out,
    const unsigned char* __restrict__ arg, const float* __restrict__ x,
    const float* __restrict__ mean, const float* __restrict__ scale,
    const float* __restrict__ k1, const float* __restrict__ k2, int n, int h, int w, int c,
    int size, int stride, int ho, int wo, float* __restrict__ dx) {
    const int per_image = h * w * c;
    for (long long b = blockIdx.y; b < n; b += gridDim.y) {
        for (int i0 = blockIdx.x * BLOCK + threadIdx.x; i0 < per_image; i0 += gridDim.x * BLOCK) {
            int t = i0;
            const int ch = t % c;
            t /= c;
            const int iw = t % w;
            const int ih = t / w;
            const long long idx = b * per_image + i0;
            float d = 0.0f;
            for (int i = 0; i < size; ++i) {
                const int dh = ih - i;
                if (dh < 0 || dh % stride != 0 || dh / stride >= ho) continue;
                for (int j = 0; j < size; ++j) {
                    const int dw = iw - j;
                    if (dw < 0 || dw % stride != 0 || dw / stride >= wo) continue;
                    const long long e = ((b * ho + dh / stride) * wo + dw / stride) * c + ch;
                    if (arg[e] == i * size + j && out[e] > 0.0f) d = __fadd_rn(d, dout[e]);
                }
            }
            const float centred = __fsub_rn(x[idx], mean[ch]);
            dx[idx] = __fsub_rn(__fsub_rn(__fmul_rn(d, scale[ch]), __fmul_rn(centred, k1[ch])), k2[ch]);
        }
    }
}
