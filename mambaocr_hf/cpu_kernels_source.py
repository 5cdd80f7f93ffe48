# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
# Generated from cpu_kernels.c by `make fix-copies` (scripts/check_copies.py): edit that file, not this one.
"""The C source of `cpu_kernels.c` as a string: checkpoints carry Python files only, and `cpu_kernels.py` compiles it
on first use."""

SOURCE = r"""
/* Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
 *
 * MambaOCR's CPU kernels for the bidirectional Mamba mixer: the depthwise causal convolution + SiLU and the gated
 * selective scan of both directions, forward and backward. cpu_kernels.py compiles them on first use and calls them
 * through ctypes.
 *
 * This file is the source of truth. Checkpoints carry Python files only, so cpu_kernels_source.py holds a generated
 * copy as a string: run `make fix-copies` after editing this file (the tests fail while the two differ).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CB 16
#define CHUNK 16
#define MAXN 32
#define MAXR 64
#define INLINE static inline __attribute__((always_inline))

/* frame of step s in direction d: the reverse direction reads each sequence backwards within its length */
INLINE int64_t frame_of(int64_t s, int64_t len, int64_t d) { return (d && s < len) ? len - 1 - s : s; }
/* exp inlined (a libmvec call in the state loop would spill the states held in vector registers): 2^(x log2 e),
   a degree-5 polynomial for the fraction (relative error < 3e-7 in float32), the exponent added to the bits */
INLINE float exp_core(float x) {
    const float t = x * 1.44269504088896341f;
    const float n = rintf(t);
    const float f = t - n;
    float p = 1.3400432163357548e-3f;
    p = p * f + 9.676037097887008e-3f;
    p = p * f + 5.5503272142156605e-2f;
    p = p * f + 2.402210735582987e-1f;
    p = p * f + 6.931472067106171e-1f;
    p = p * f + 1.0000000754953497f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}
/* x <= 0, as for the decays exp(dt * A) (dt >= 0, A < 0): only the underflow side needs a clamp */
INLINE float exp_nonpos(float x) { return exp_core(fmaxf(x, -87.0f)); }
INLINE float exp_f(float x) { return exp_core(fminf(fmaxf(x, -87.0f), 88.0f)); }
/* log(y) for y in [1, 2] (inlined, like exp): halve above sqrt(2), then 2 atanh(s) with s = (y - 1) / (y + 1),
   |s| <= 0.172, as an odd series to s^9 (relative error < 1e-7) */
INLINE float log_1_2(float y) {
    const int high = y > 1.41421356f;
    const float m = high ? 0.5f * y : y;
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    p = p * s2 + 2.0f;
    return p * s + (high ? 0.69314718056f : 0.0f);
}
INLINE float softplus_f(float x) { return fmaxf(x, 0.0f) + log_1_2(1.0f + exp_nonpos(-fabsf(x))); }
INLINE float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }
INLINE int64_t clamp_len(int64_t len, int64_t L) { return len < 0 ? 0 : (len > L ? L : len); }

/* ---------------------------------------------------------------- depthwise causal conv + SiLU, both directions */

INLINE void conv_forward_task(const float* x, int64_t x_sb, int64_t x_st, const float* wT, const float* bias,
                              int64_t len, float* u, int64_t b, int64_t d, int64_t B, int64_t L, int64_t I,
                              int64_t K) {
    const float* xb = x + b * x_sb;
    float* ub = u + (d * B + b) * L * I;
    const float* w = wT + d * K * I; /* [K, I] */
    for (int64_t s = 0; s < L; s++) {
        float* out = ub + frame_of(s, len, d) * I;
        for (int64_t c = 0; c < I; c++) out[c] = bias ? bias[d * I + c] : 0.0f;
        for (int64_t k = 0; k < K; k++) {
            int64_t j = s - (K - 1) + k;
            if (j < 0) continue;
            const float* xr = xb + frame_of(j, len, d) * x_st;
            const float* wk = w + k * I;
#pragma omp simd
            for (int64_t c = 0; c < I; c++) out[c] += wk[c] * xr[c];
        }
#pragma omp simd
        for (int64_t c = 0; c < I; c++) out[c] = out[c] * sigmoid_f(out[c]);
    }
}

void mambaocr_conv_forward(const float* x, int64_t x_sb, int64_t x_st, const float* wT, const float* bias,
                           const int64_t* lengths, float* u, int64_t dirs, int64_t B, int64_t L, int64_t I,
                           int64_t K, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) collapse(2)
    for (int64_t d = 0; d < dirs; d++)
        for (int64_t b = 0; b < B; b++)
            conv_forward_task(x, x_sb, x_st, wT, bias, clamp_len(lengths[b], L), u, b, d, B, L, I, K);
}

/* gu [dirs, B, L, I] -> dx [B, L, I] (zeroed by the caller), dw [B, dirs, K, I], dbias [B, dirs, I] per sample */
void mambaocr_conv_backward(const float* x, int64_t x_sb, int64_t x_st, const float* wT, const float* bias,
                            const int64_t* lengths, const float* gu, float* dx, float* dw, float* dbias,
                            int64_t dirs, int64_t B, int64_t L, int64_t I, int64_t K, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        int64_t len = clamp_len(lengths[b], L);
        const float* xb = x + b * x_sb;
        float* dxb = dx + b * L * I;
        for (int64_t d = 0; d < dirs; d++) {
            const float* w = wT + d * K * I;
            const float* gub = gu + (d * B + b) * L * I;
            float* dwb = dw + (b * dirs + d) * K * I;
            float* dbb = dbias + (b * dirs + d) * I;
            for (int64_t s = 0; s < L; s++) {
                const float* g_out = gub + frame_of(s, len, d) * I;
                for (int64_t c0 = 0; c0 < I; c0 += CB) {
                    int64_t cb = I - c0 < CB ? I - c0 : CB;
                    float pre[CB], g[CB];
                    for (int64_t c = 0; c < cb; c++) pre[c] = bias ? bias[d * I + c0 + c] : 0.0f;
                    for (int64_t k = 0; k < K; k++) {
                        int64_t j = s - (K - 1) + k;
                        if (j < 0) continue;
                        const float* xr = xb + frame_of(j, len, d) * x_st + c0;
                        for (int64_t c = 0; c < cb; c++) pre[c] += w[k * I + c0 + c] * xr[c];
                    }
#pragma omp simd
                    for (int64_t c = 0; c < cb; c++) {
                        float sg = sigmoid_f(pre[c]);
                        g[c] = g_out[c0 + c] * sg * (1.0f + pre[c] * (1.0f - sg));
                        dbb[c0 + c] += g[c];
                    }
                    for (int64_t k = 0; k < K; k++) {
                        int64_t j = s - (K - 1) + k;
                        if (j < 0) continue;
                        int64_t f = frame_of(j, len, d);
                        const float* xr = xb + f * x_st + c0;
                        float* dxr = dxb + f * I + c0;
                        for (int64_t c = 0; c < cb; c++) {
                            dxr[c] += g[c] * w[k * I + c0 + c];
                            dwb[k * I + c0 + c] += g[c] * xr[c];
                        }
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- selective scan, both directions */

/* Shapes: u [dirs, B, L, I]; proj [dirs, B, L, P], x_proj's output: the low-rank step dt_low (R values), then B
   (N values) and C (N values); WdtT [dirs, R, I], dt_proj's weight transposed; AT [dirs, N, I] (negative);
   D, dbias [dirs, I]; z[b, t, c] at z + b * z_sb + t * z_st + c. delta = dt_low . WdtT + dbias, dt = softplus(delta).
   y [B, L, I] = mean over directions of (y_d + D_d u_d) * silu(z);
   states [dirs, B, n_chunks, N, I]: the state before each chunk of CHUNK steps (NULL: not kept). */
INLINE void step_delta(const float* pt, const float* W, const float* bias, const float* din, int64_t R, int64_t I,
                       const int64_t cb, float* dlt) {
    if (din) { /* Δ given (a PEFT-wrapped dt_proj computed it) */
#pragma omp simd
        for (int64_t c = 0; c < cb; c++) dlt[c] = din[c] + bias[c];
        return;
    }
#pragma omp simd
    for (int64_t c = 0; c < cb; c++) dlt[c] = bias[c];
    for (int64_t r = 0; r < R; r++) {
        const float pv = pt[r];
        const float* Wr = W + r * I;
#pragma omp simd
        for (int64_t c = 0; c < cb; c++) dlt[c] += pv * Wr[c];
    }
}

INLINE void scan_forward_task(const float* u, const float* proj, const float* delta_in, const float* WdtT,
                              const float* AT, const float* D, const float* dbias, const float* z, int64_t z_sb, int64_t z_st, int64_t len, float* y,
                              float* states, int64_t b, int64_t c0, const int64_t cb, int64_t dirs, int64_t B,
                              int64_t L, int64_t I, int64_t N, int64_t R, int64_t P) {
    const float scale = 1.0f / (float)dirs;
    const int64_t n_chunks = (L + CHUNK - 1) / CHUNK;
    float h[MAXN * CB];
    for (int64_t d = 0; d < dirs; d++) {
        const float* A = AT + d * N * I + c0;
        const float* W = WdtT + d * R * I + c0;
        const float* Dd = D + d * I + c0;
        const float* bias = dbias + d * I + c0;
        memset(h, 0, sizeof(float) * N * CB);
        for (int64_t s = 0; s < L; s++) {
            if (states && s % CHUNK == 0) {
                float* st = states + ((d * B + b) * n_chunks + s / CHUNK) * N * I + c0;
                for (int64_t n = 0; n < N; n++) memcpy(st + n * I, h + n * CB, sizeof(float) * cb);
            }
            const int64_t t = frame_of(s, len, d), row = (d * B + b) * L + t;
            const float* ut = u + row * I + c0;
            const float* pt = proj + row * P;
            const float* bt = pt + R;
            const float* ct = pt + R + N;
            const float* zt = z + b * z_sb + t * z_st + c0;
            float* yt = y + (b * L + t) * I + c0;
            float dt[CB], dtu[CB], acc[CB];
            step_delta(pt, W, bias, delta_in ? delta_in + row * I + c0 : 0, R, I, cb, dt);
#pragma omp simd
            for (int64_t c = 0; c < cb; c++) {
                dt[c] = softplus_f(dt[c]);
                dtu[c] = dt[c] * ut[c];
                acc[c] = 0.0f;
            }
            for (int64_t n = 0; n < N; n++) {
                const float bv = bt[n], cv = ct[n];
                float* hn = h + n * CB;
                const float* An = A + n * I;
#pragma omp simd
                for (int64_t c = 0; c < cb; c++) {
                    hn[c] = exp_nonpos(dt[c] * An[c]) * hn[c] + dtu[c] * bv;
                    acc[c] += hn[c] * cv;
                }
            }
#pragma omp simd
            for (int64_t c = 0; c < cb; c++) {
                float out = (acc[c] + Dd[c] * ut[c]) * zt[c] * sigmoid_f(zt[c]) * scale;
                yt[c] = d == 0 ? out : yt[c] + out;
            }
        }
    }
}

#if defined(__AVX512F__)
/* The forward task for a full block of 16 channels with AVX-512 intrinsics: `exp` ends in one `vscalefps` (no
   clamping or exponent bit arithmetic), divisions become `vrcp14ps` + one Newton step. Same recurrence and
   accuracy as the portable `scan_forward_task`, which serves partial blocks and other CPUs. */
#include <immintrin.h>

static inline __m512 exp512(__m512 x) { /* scalef saturates to 0 and inf by itself */
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3400432163357548e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.676037097887008e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5503272142156605e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402210735582987e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472067106171e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000000754953497f));
    return _mm512_scalef_ps(p, n);
}
static inline __m512 recip512(__m512 x) { /* 14-bit estimate + one Newton step: ~1 ulp */
    const __m512 r = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(2.0f)));
}
static inline __m512 softplus512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 y = _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x))));
    const __mmask16 high = _mm512_cmp_ps_mask(y, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    const __m512 m = _mm512_mask_mul_ps(y, high, y, _mm512_set1_ps(0.5f));
    const __m512 s = _mm512_mul_ps(_mm512_sub_ps(m, one), recip512(_mm512_add_ps(m, one)));
    const __m512 s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(2.0f / 9.0f);
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 7.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 5.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 3.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f));
    const __m512 log_y = _mm512_mask_add_ps(_mm512_mul_ps(p, s), high, _mm512_mul_ps(p, s),
                                            _mm512_set1_ps(0.69314718056f));
    return _mm512_add_ps(_mm512_max_ps(x, _mm512_setzero_ps()), log_y);
}

static void scan_forward_block16(const float* u, const float* proj, const float* delta_in, const float* WdtT,
                                 const float* AT, const float* D, const float* dbias, const float* z, int64_t z_sb, int64_t z_st,
                                 int64_t len, float* y, float* states, int64_t b, int64_t c0, int64_t dirs,
                                 int64_t B, int64_t L, int64_t I, int64_t N, int64_t R, int64_t P) {
    const __m512 scale = _mm512_set1_ps(1.0f / (float)dirs), one = _mm512_set1_ps(1.0f);
    const int64_t n_chunks = (L + CHUNK - 1) / CHUNK;
    __m512 h[MAXN], A[MAXN], W[MAXR];
    for (int64_t d = 0; d < dirs; d++) {
        for (int64_t n = 0; n < N; n++) {
            A[n] = _mm512_loadu_ps(AT + (d * N + n) * I + c0);
            h[n] = _mm512_setzero_ps();
        }
        for (int64_t r = 0; r < R && !delta_in; r++) W[r] = _mm512_loadu_ps(WdtT + (d * R + r) * I + c0);
        const __m512 Dd = _mm512_loadu_ps(D + d * I + c0), bias = _mm512_loadu_ps(dbias + d * I + c0);
        for (int64_t s = 0; s < L; s++) {
            if (states && s % CHUNK == 0) {
                float* st = states + ((d * B + b) * n_chunks + s / CHUNK) * N * I + c0;
                for (int64_t n = 0; n < N; n++) _mm512_storeu_ps(st + n * I, h[n]);
            }
            const int64_t t = frame_of(s, len, d), row = (d * B + b) * L + t;
            const float* pt = proj + row * P;
            __m512 delta = bias;
            if (delta_in)
                delta = _mm512_add_ps(delta, _mm512_loadu_ps(delta_in + row * I + c0));
            else
                for (int64_t r = 0; r < R; r++) delta = _mm512_fmadd_ps(_mm512_set1_ps(pt[r]), W[r], delta);
            const __m512 dt = softplus512(delta);
            const __m512 ut = _mm512_loadu_ps(u + row * I + c0);
            const __m512 dtu = _mm512_mul_ps(dt, ut);
            __m512 acc = _mm512_mul_ps(Dd, ut);
            for (int64_t n = 0; n < N; n++) {
                const __m512 decay = exp512(_mm512_mul_ps(dt, A[n]));
                h[n] = _mm512_fmadd_ps(decay, h[n], _mm512_mul_ps(dtu, _mm512_set1_ps(pt[R + n])));
                acc = _mm512_fmadd_ps(h[n], _mm512_set1_ps(pt[R + N + n]), acc);
            }
            const __m512 zt = _mm512_loadu_ps(z + b * z_sb + t * z_st + c0);
            const __m512 gate = _mm512_mul_ps(zt, recip512(_mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), zt)))));
            __m512 out = _mm512_mul_ps(_mm512_mul_ps(acc, gate), scale);
            float* yt = y + (b * L + t) * I + c0;
            if (d) out = _mm512_add_ps(out, _mm512_loadu_ps(yt));
            _mm512_storeu_ps(yt, out);
        }
    }
}
#define HAVE_BLOCK16 1
#endif

void mambaocr_scan_forward(const float* u, const float* proj, const float* delta_in, const float* WdtT,
                           const float* AT, const float* D,
                           const float* dbias, const float* z, int64_t z_sb, int64_t z_st, const int64_t* lengths,
                           float* y, float* states, int64_t dirs, int64_t B, int64_t L, int64_t I, int64_t N,
                           int64_t R, int64_t P, int nthreads) {
    const int64_t blocks = (I + CB - 1) / CB;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t task = 0; task < B * blocks; task++) {
        int64_t b = task / blocks, c0 = (task % blocks) * CB;
        int64_t len = clamp_len(lengths[b], L);
#ifdef HAVE_BLOCK16
        if (I - c0 >= CB) {
            scan_forward_block16(u, proj, delta_in, WdtT, AT, D, dbias, z, z_sb, z_st, len, y, states, b, c0, dirs, B,
                                 L, I, N, R, P);
            continue;
        }
#endif
        if (I - c0 >= CB)
            scan_forward_task(u, proj, delta_in, WdtT, AT, D, dbias, z, z_sb, z_st, len, y, states, b, c0, CB, dirs, B, L, I,
                              N, R, P);
        else
            scan_forward_task(u, proj, delta_in, WdtT, AT, D, dbias, z, z_sb, z_st, len, y, states, b, c0, I - c0, dirs, B, L,
                              I, N, R, P);
    }
}

/* Gradients. gy [B, L, I]. Written: du [dirs, B, L, I] and dz [B, L, I]; per-channel-block partials
   dproj [blocks, dirs, B, L, P] (summed over blocks by the caller); per-sample partials dWdt [B, dirs, R, I],
   dA [B, dirs, N, I], dD and dbias_out [B, dirs, I]. */
INLINE void scan_backward_task(const float* u, const float* proj, const float* delta_in, const float* WdtT,
                               const float* AT, const float* D,
                               const float* dbias, const float* z, int64_t z_sb, int64_t z_st, int64_t len,
                               const float* states, const float* gy, float* du, float* dz, float* dproj,
                               float* ddelta_out, float* dW,
                               float* dA, float* dD, float* dbias_out, int64_t b, int64_t blk, const int64_t cb,
                               int64_t dirs, int64_t B, int64_t L, int64_t I, int64_t N, int64_t R, int64_t P) {
    const float scale = 1.0f / (float)dirs;
    const int64_t n_chunks = (L + CHUNK - 1) / CHUNK;
    const int64_t c0 = blk * CB;
    float H[CHUNK * MAXN * CB], E[CHUNK * MAXN * CB], DT[CHUNK * CB], DL[CHUNK * CB];
    float h0[MAXN * CB], carry[MAXN * CB], dA_acc[MAXN * CB], dW_acc[MAXR * CB], dD_acc[CB], db_acc[CB];
    for (int64_t d = 0; d < dirs; d++) {
        const float* A = AT + d * N * I + c0;
        const float* W = WdtT + d * R * I + c0;
        const float* Dd = D + d * I + c0;
        const float* bias = dbias + d * I + c0;
        memset(carry, 0, sizeof(float) * N * CB);
        memset(dA_acc, 0, sizeof(float) * N * CB);
        memset(dW_acc, 0, sizeof(float) * R * CB);
        memset(dD_acc, 0, sizeof(dD_acc));
        memset(db_acc, 0, sizeof(db_acc));
        for (int64_t k = n_chunks - 1; k >= 0; k--) {
            const int64_t s0 = k * CHUNK, m = (L - s0) < CHUNK ? (L - s0) : CHUNK;
            const float* st = states + ((d * B + b) * n_chunks + k) * N * I + c0;
            for (int64_t n = 0; n < N; n++) {
                memcpy(h0 + n * CB, st + n * I, sizeof(float) * cb);
                for (int64_t c = cb; c < CB; c++) h0[n * CB + c] = 0.0f;
            }
            /* recompute the chunk's steps, states H and decays E */
            for (int64_t j = 0; j < m; j++) {
                const int64_t row = (d * B + b) * L + frame_of(s0 + j, len, d);
                const float* ut = u + row * I + c0;
                const float* pt = proj + row * P;
                float* dtj = DT + j * CB;
                float* dlj = DL + j * CB;
                step_delta(pt, W, bias, delta_in ? delta_in + row * I + c0 : 0, R, I, cb, dlj);
#pragma omp simd
                for (int64_t c = 0; c < cb; c++) dtj[c] = softplus_f(dlj[c]);
                for (int64_t n = 0; n < N; n++) {
                    const float* hp = j ? H + ((j - 1) * MAXN + n) * CB : h0 + n * CB;
                    float* hj = H + (j * MAXN + n) * CB;
                    float* ej = E + (j * MAXN + n) * CB;
                    const float* An = A + n * I;
                    const float bv = pt[R + n];
#pragma omp simd
                    for (int64_t c = 0; c < cb; c++) {
                        ej[c] = exp_nonpos(dtj[c] * An[c]);
                        hj[c] = ej[c] * hp[c] + dtj[c] * ut[c] * bv;
                    }
                }
            }
            /* adjoint recurrence, backwards in time */
            for (int64_t j = m - 1; j >= 0; j--) {
                const int64_t t = frame_of(s0 + j, len, d), row = (d * B + b) * L + t;
                const float* ut = u + row * I + c0;
                const float* pt = proj + row * P;
                const float* bt = pt + R;
                const float* ct = pt + R + N;
                const float* zt = z + b * z_sb + t * z_st + c0;
                const float* gt = gy + (b * L + t) * I + c0;
                const float* dtj = DT + j * CB;
                const float* dlj = DL + j * CB;
                float* dzt = dz + (b * L + t) * I + c0;
                float* dpt = dproj + (blk * dirs * B * L + row) * P;
                float y[CB], dy[CB], du_c[CB], ddt[CB];
                for (int64_t c = 0; c < CB; c++) y[c] = 0.0f;
                for (int64_t n = 0; n < N; n++) {
                    const float cv = ct[n];
                    const float* hj = H + (j * MAXN + n) * CB;
#pragma omp simd
                    for (int64_t c = 0; c < cb; c++) y[c] += hj[c] * cv;
                }
#pragma omp simd
                for (int64_t c = 0; c < cb; c++) {
                    float sg = sigmoid_f(zt[c]);
                    float g = gt[c] * scale;
                    float dzv = g * (y[c] + Dd[c] * ut[c]) * sg * (1.0f + zt[c] * (1.0f - sg));
                    dzt[c] = d == 0 ? dzv : dzt[c] + dzv;
                    dy[c] = g * zt[c] * sg;
                    dD_acc[c] += dy[c] * ut[c];
                    du_c[c] = dy[c] * Dd[c];
                    ddt[c] = 0.0f;
                }
                for (int64_t n = 0; n < N; n++) {
                    const float bv = bt[n], cv = ct[n];
                    const float* hj = H + (j * MAXN + n) * CB;
                    const float* hp = j ? H + ((j - 1) * MAXN + n) * CB : h0 + n * CB;
                    const float* ej = E + (j * MAXN + n) * CB;
                    const float* An = A + n * I;
                    float* cr = carry + n * CB;
                    float* dAn = dA_acc + n * CB;
                    float sum_c = 0.0f, sum_b = 0.0f;
#pragma omp simd reduction(+ : sum_c, sum_b)
                    for (int64_t c = 0; c < cb; c++) {
                        float dh = dy[c] * cv + cr[c];
                        sum_c += dy[c] * hj[c];
                        float da = dh * hp[c] * ej[c]; /* gradient of the exponent dt * A */
                        ddt[c] += da * An[c] + dh * ut[c] * bv;
                        dAn[c] += da * dtj[c];
                        du_c[c] += dh * dtj[c] * bv;
                        sum_b += dh * dtj[c] * ut[c];
                        cr[c] = ej[c] * dh;
                    }
                    dpt[R + N + n] = sum_c;
                    dpt[R + n] = sum_b;
                }
                float* dut = du + row * I + c0;
#pragma omp simd
                for (int64_t c = 0; c < cb; c++) {
                    ddt[c] *= sigmoid_f(dlj[c]); /* now the gradient of delta */
                    db_acc[c] += ddt[c];
                    dut[c] = du_c[c];
                }
                if (ddelta_out) { /* Δ was given: hand its gradient back, the low-rank input gets none here */
                    for (int64_t c = 0; c < cb; c++) ddelta_out[row * I + c0 + c] = ddt[c];
                    for (int64_t r = 0; r < R; r++) dpt[r] = 0.0f;
                }
                for (int64_t r = 0; r < R && !ddelta_out; r++) {
                    const float pv = pt[r];
                    const float* Wr = W + r * I;
                    float* dWr = dW_acc + r * CB;
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int64_t c = 0; c < cb; c++) {
                        sum += ddt[c] * Wr[c];
                        dWr[c] += pv * ddt[c];
                    }
                    dpt[r] = sum;
                }
            }
        }
        float* dAb = dA + (b * dirs + d) * N * I + c0;
        for (int64_t n = 0; n < N; n++) memcpy(dAb + n * I, dA_acc + n * CB, sizeof(float) * cb);
        float* dWb = dW + (b * dirs + d) * R * I + c0;
        for (int64_t r = 0; r < R; r++) memcpy(dWb + r * I, dW_acc + r * CB, sizeof(float) * cb);
        memcpy(dD + (b * dirs + d) * I + c0, dD_acc, sizeof(float) * cb);
        memcpy(dbias_out + (b * dirs + d) * I + c0, db_acc, sizeof(float) * cb);
    }
}

void mambaocr_scan_backward(const float* u, const float* proj, const float* delta_in, const float* WdtT,
                            const float* AT, const float* D,
                            const float* dbias, const float* z, int64_t z_sb, int64_t z_st, const int64_t* lengths,
                            const float* states, const float* gy, float* du, float* dz, float* dproj,
                            float* ddelta_out, float* dW,
                            float* dA, float* dD, float* dbias_out, int64_t dirs, int64_t B, int64_t L, int64_t I,
                            int64_t N, int64_t R, int64_t P, int nthreads) {
    const int64_t blocks = (I + CB - 1) / CB;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t task = 0; task < B * blocks; task++) {
        int64_t b = task / blocks, blk = task % blocks;
        int64_t len = clamp_len(lengths[b], L);
        if (I - blk * CB >= CB)
            scan_backward_task(u, proj, delta_in, WdtT, AT, D, dbias, z, z_sb, z_st, len, states, gy, du, dz, dproj,
                               ddelta_out, dW, dA,
                               dD, dbias_out, b, blk, CB, dirs, B, L, I, N, R, P);
        else
            scan_backward_task(u, proj, delta_in, WdtT, AT, D, dbias, z, z_sb, z_st, len, states, gy, du, dz, dproj,
                               ddelta_out, dW, dA,
                               dD, dbias_out, b, blk, I - blk * CB, dirs, B, L, I, N, R, P);
    }
}
"""
