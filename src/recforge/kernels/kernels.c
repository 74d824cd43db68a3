/* One-pass sparse row updates for recforge.optim (LazyAdam, RowWiseAdagrad), loaded with ctypes.
 *
 * The torch path coalesces a row gradient (sort the looked-up ids, sum duplicates), then gathers,
 * updates and scatters the touched rows in separate passes. Each pass over rows scattered through a
 * table far larger than the caches waits about a memory latency per row. Here one pass groups the
 * looked-up rows without sorting: `slot` maps a table row to its place among this step's distinct
 * rows. A second pass updates each distinct row in place, once. It prefetches the rows a few steps
 * ahead so that their loads overlap.
 *
 * Both entry points take the gradient as it comes from a sparse embedding backward: `ids (nnz,)`
 * with repeats, `grad (nnz, D)`. Scratch, owned by the caller: `slot (V,)`, every entry -1 on entry
 * and left -1 on return; `uniq (nnz,)`; `acc (nnz, D)`. Duplicates are summed in the order they
 * occur. Return: the number of distinct rows, or -1 - i when ids[i] lies outside [0, V); then
 * nothing has been updated.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define AHEAD 8 /* rows prefetched ahead of the one being updated */

/* Functions marked VECTOR_CLONES are compiled three times (AVX-512, AVX2, baseline x86-64) where
 * GCC can on Linux; the loader picks the widest the CPU has. Elsewhere they build once, portably. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Built with -fopenmp where the compiler has it: the loops below marked PARALLEL then split over
 * the threads of the process's OpenMP runtime, which is torch's own (its libgomp is loaded first,
 * under the same soname), so torch.set_num_threads applies and no second thread pool competes.
 * Without OpenMP the pragmas are ignored and every loop runs on the calling thread. Each parallel
 * loop writes disjoint elements, so results do not depend on the thread count. */
#define MIN_PARALLEL 16384 /* fewer iterations than this: one thread */

/* inlined into each clone of the updates below */
static inline __attribute__((always_inline)) int64_t group_rows(int64_t V, int64_t D, const int64_t *ids,
                                                                const float *grad, int64_t nnz, int32_t *slot,
                                                                int64_t *uniq, float *acc) {
  int64_t n = 0;
  for (int64_t i = 0; i < nnz; ++i) {
    if (i + AHEAD < nnz) {
      int64_t ahead = ids[i + AHEAD];
      if (ahead >= 0 && ahead < V) __builtin_prefetch(slot + ahead);
    }
    int64_t r = ids[i];
    if (r < 0 || r >= V) {
      for (int64_t s = 0; s < n; ++s) slot[uniq[s]] = -1;
      return -1 - i;
    }
    const float *g = grad + i * D;
    int32_t s = slot[r];
    if (s < 0) {
      s = slot[r] = (int32_t)n;
      uniq[n++] = r;
      memcpy(acc + (int64_t)s * D, g, (size_t)D * sizeof(float));
    } else {
      float *a = acc + (int64_t)s * D;
      for (int64_t d = 0; d < D; ++d) a[d] += g[d];
    }
  }
  return n;
}

/* LazyAdam: weight (V, D), moments (V, 2, D) = [exp_avg, exp_avg_sq] per row.
 * m <- m + (1 - b1)(g - m); v <- b2 v + (1 - b2) g^2;
 * w <- w - step_size * m / (sqrt(v * inv_bc2) + eps) - decay * w
 * with step_size = lr / (1 - b1^t), inv_bc2 = 1 / (1 - b2^t), decay = lr * weight_decay. */
VECTOR_CLONES
int64_t recforge_lazy_adam_rows(float *weight, float *moments, int64_t V, int64_t D, const int64_t *ids,
                                const float *grad, int64_t nnz, int32_t *slot, int64_t *uniq, float *acc,
                                float b1, float b2, float eps, float step_size, float inv_bc2, float decay) {
  int64_t n = group_rows(V, D, ids, grad, nnz, slot, uniq, acc);
  if (n < 0) return n;
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
  for (int64_t s = 0; s < n; ++s) {
    if (s + AHEAD < n) {
      int64_t q = uniq[s + AHEAD];
      __builtin_prefetch(weight + q * D, 1);
      __builtin_prefetch(moments + q * 2 * D, 1);
      __builtin_prefetch(moments + q * 2 * D + D, 1);
    }
    int64_t r = uniq[s];
    float *w = weight + r * D, *m = moments + r * 2 * D, *v = m + D;
    const float *g = acc + s * D;
    for (int64_t d = 0; d < D; ++d) {
      float gd = g[d];
      float md = m[d] + c1 * (gd - m[d]);
      float vd = b2 * v[d] + c2 * gd * gd;
      m[d] = md;
      v[d] = vd;
      w[d] -= step_size * md / (sqrtf(vd * inv_bc2) + eps) + decay * w[d];
    }
    slot[r] = -1;
  }
  return n;
}

/* RowWiseAdagrad: weight (V, D), sums (V, K): one accumulator per block of D / K columns.
 * g <- g + weight_decay * w; G <- G + mean over the block of g^2; w <- w - lr * g / (sqrt(G) + eps). */
VECTOR_CLONES
int64_t recforge_rowwise_adagrad_rows(float *weight, float *sums, int64_t V, int64_t D, int64_t K,
                                      const int64_t *ids, const float *grad, int64_t nnz, int32_t *slot,
                                      int64_t *uniq, float *acc, float lr, float eps, float weight_decay) {
  int64_t n = group_rows(V, D, ids, grad, nnz, slot, uniq, acc);
  if (n < 0) return n;
  const int64_t width = D / K;
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
  for (int64_t s = 0; s < n; ++s) {
    if (s + AHEAD < n) {
      int64_t q = uniq[s + AHEAD];
      __builtin_prefetch(weight + q * D, 1);
      __builtin_prefetch(sums + q * K, 1);
    }
    int64_t r = uniq[s];
    float *w = weight + r * D, *G = sums + r * K;
    float *g = acc + s * D;
    for (int64_t k = 0; k < K; ++k) {
      float *gk = g + k * width, *wk = w + k * width;
      float sq = 0.0f;
      for (int64_t d = 0; d < width; ++d) {
        if (weight_decay != 0.0f) gk[d] += weight_decay * wk[d];
        sq += gk[d] * gk[d];
      }
      G[k] += sq / (float)width;
      float scale = lr / (sqrtf(G[k]) + eps);
      for (int64_t d = 0; d < width; ++d) wk[d] -= scale * gk[d];
    }
    slot[r] = -1;
  }
  return n;
}

/* ---- Dropout (optionally fused with a ReLU in front of it) on float32 or bfloat16 tensors ----
 *
 * Element i is kept when the top 31 bits of its random word, hash(seed, i), are at least
 * `threshold` (= p * 2^31): every element is kept independently with probability 1 - p to within
 * 2^-31, and a seed drawn from torch's generator makes the masks follow torch.manual_seed. The
 * hash is two rounds of MurmurHash3's 32-bit finaliser over the element's index and the seed: only
 * 32-bit multiplies, so the loop vectorises on any x86-64 (64-bit vector multiplies need AVX-512DQ).
 * With `relu`, elements <= 0 are dropped too (NaN passes, as through torch.relu). Kept elements are
 * scaled by `scale`; `mask` (one byte per element) records what was kept, for the backward pass. */


static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  uint32_t quiet = (u >> 16) | 0x40u;
  return (uint16_t)((u & 0x7FFFFFFFu) > 0x7F800000u ? quiet : rounded);
}

#define BLOCK 512 /* elements whose random words are drawn at once */

VECTOR_CLONES
static void draw_scale(float *mul, int64_t start, int64_t count, uint32_t threshold, float scale, uint64_t seed) {
  const uint32_t lo = (uint32_t)seed, hi = (uint32_t)(seed >> 32) ^ (uint32_t)((uint64_t)start >> 32);
  const uint32_t first = (uint32_t)start;
  for (int64_t k = 0; k < count; ++k) {
    uint32_t h = fmix32(fmix32((first + (uint32_t)k) ^ lo) + hi);
    mul[k] = (h >> 1) >= threshold ? scale : 0.0f;
  }
}

VECTOR_CLONES
void recforge_dropout_forward(const void *x, void *out, uint8_t *mask, int64_t n, int bf16, uint32_t threshold,
                              float scale, uint64_t seed, int relu) {
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
  for (int64_t start = 0; start < n; start += BLOCK) {
    float mul[BLOCK];
    int64_t count = n - start < BLOCK ? n - start : BLOCK;
    draw_scale(mul, start, count, threshold, scale, seed);
    uint8_t *m = mask + start;
    if (bf16) {
      const uint16_t *xs = (const uint16_t *)x + start;
      uint16_t *o = (uint16_t *)out + start;
      if (relu)
        for (int64_t k = 0; k < count; ++k) {
          float v = bf16_to_f32(xs[k]);
          float s = v <= 0.0f ? 0.0f : mul[k];
          m[k] = s != 0.0f;
          o[k] = f32_to_bf16(v * s);
        }
      else
        for (int64_t k = 0; k < count; ++k) {
          float v = bf16_to_f32(xs[k]);
          m[k] = mul[k] != 0.0f;
          o[k] = f32_to_bf16(v * mul[k]);
        }
    } else {
      const float *xs = (const float *)x + start;
      float *o = (float *)out + start;
      if (relu)
        for (int64_t k = 0; k < count; ++k) {
          float v = xs[k];
          float s = v <= 0.0f ? 0.0f : mul[k];
          m[k] = s != 0.0f;
          o[k] = v * s;
        }
      else
        for (int64_t k = 0; k < count; ++k) {
          m[k] = mul[k] != 0.0f;
          o[k] = xs[k] * mul[k];
        }
    }
  }
}

VECTOR_CLONES
void recforge_dropout_backward(const void *grad, void *out, const uint8_t *mask, int64_t n, int bf16, float scale) {
  if (bf16) {
    const uint16_t *g = (const uint16_t *)grad;
    uint16_t *o = (uint16_t *)out;
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
    for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16(bf16_to_f32(g[i]) * ((float)mask[i] * scale));
  } else {
    const float *g = (const float *)grad;
    float *o = (float *)out;
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
    for (int64_t i = 0; i < n; ++i) o[i] = g[i] * ((float)mask[i] * scale);
  }
}

/* ---- Embedding lookup: out[i] = weight[ids[i]] (rows of D floats), prefetching rows ahead ----
 * The rows of a large table are scattered far beyond the caches; fetching a few rows ahead overlaps
 * their memory latencies. Returns 0, or -1 - i when ids[i] lies outside [0, V) (out is then
 * partly written; the caller discards it). */
int64_t recforge_gather_rows(const float *weight, int64_t V, int64_t D, const int64_t *ids, int64_t n, float *out) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V) return -1 - i;
#pragma omp parallel for schedule(static) if (n >= MIN_PARALLEL)
  for (int64_t i = 0; i < n; ++i) {
    if (i + 2 * AHEAD < n) __builtin_prefetch(weight + ids[i + 2 * AHEAD] * D);
    memcpy(out + i * D, weight + ids[i] * D, (size_t)D * sizeof(float));
  }
  return 0;
}

/* ---- Batch gather: rows `index` of many columns at once ----
 * Column c holds `rows` rows of `row_bytes[c]` bytes each; out[c] receives rows index[0..n). Each
 * column is read in one pass over the batch's rows, prefetching the row a few rows ahead (a shuffled
 * batch reads rows scattered over columns far larger than the caches). Returns 0, or -1 - i when
 * index[i] lies outside [0, rows). */
int64_t recforge_gather_columns(const char *const *cols, const int64_t *row_bytes, int64_t ncols, int64_t rows,
                                const int64_t *index, int64_t n, char *const *outs) {
  for (int64_t i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= rows) return -1 - i;
#pragma omp parallel for schedule(static) if (n * ncols >= MIN_PARALLEL)
  for (int64_t c = 0; c < ncols; ++c) {
    const int64_t b = row_bytes[c];
    const char *col = cols[c];
    char *out = outs[c];
    for (int64_t i = 0; i < n; ++i) {
      if (i + 2 * AHEAD < n) __builtin_prefetch(col + index[i + 2 * AHEAD] * b);
      const char *src = col + index[i] * b;
      if (b == 8) memcpy(out + i * 8, src, 8);
      else if (b == 4) memcpy(out + i * 4, src, 4);
      else memcpy(out + i * b, src, (size_t)b);
    }
  }
  return 0;
}

/* ---- First-order + FM logit over field embeddings, and the deep tower's input, one pass each way ----
 * x (B, F*D): each row the F field vectors of D floats; w (F*D,) the first-order weights.
 * Forward: logit[b] = bias + sum_j w_j x_bj + (sum_d (sum_f x_bfd)^2 - sum_j x_bj^2) / 2, and, when
 * `deep` is not NULL, deep row b (a row of `ld` elements, float32 or bfloat16) starts with x_b,
 * followed by row b of each of the n_extra float32 blocks extra[e] (B, widths[e]).
 * Backward: gx_bfd = g_b (sum_f' x_bf'd - x_bfd + w_fd) + gdeep_bfd (gdeep may be NULL: zero), and
 * the first-order weights' gradient sum_b g_b x_b, one partial (F*D,) per block of `block_rows` rows in
 * `gw_parts`, summed by the caller: the blocks do not depend on the thread count, so neither does
 * the result. The per-row sums run over d in D lanes (vectorised) and then over the lanes. */
#define LANES 16 /* the per-row sums run over d in blocks of LANES (one vector register of floats) */

/* Sums of field row xb (F fields of D floats) for the block of columns [d0, d0 + LANES) (every
 * index below D): total, squares and first-order products, per column. */
static inline void head_sums(const float *restrict xb, const float *restrict w, int64_t F, int64_t D, int64_t d0,
                             float *restrict total, float *restrict sq, float *restrict lin) {
  for (int d = 0; d < LANES; ++d) total[d] = sq[d] = lin[d] = 0.0f;
  for (int64_t f = 0; f < F; ++f) {
    const float *xf = xb + f * D + d0, *wf = w + f * D + d0;
    for (int d = 0; d < LANES; ++d) {
      float v = xf[d];
      total[d] += v;
      sq[d] += v * v;
      lin[d] += wf[d] * v;
    }
  }
}

VECTOR_CLONES
void recforge_fm_head_forward(const float *x, int64_t B, int64_t F, int64_t D, const float *w, float bias,
                              float *logit, void *deep, int64_t ld, int deep_bf16, const float *const *extra,
                              const int64_t *widths, int64_t n_extra) {
  const int64_t n = F * D;
#pragma omp parallel for schedule(static) if (B * n >= MIN_PARALLEL)
  for (int64_t b = 0; b < B; ++b) {
    const float *xb = x + b * n;
    float acc = 0.0f;
    int64_t d0 = 0;
    for (; d0 + LANES <= D; d0 += LANES) {
      float total[LANES], sq[LANES], lin[LANES];
      head_sums(xb, w, F, D, d0, total, sq, lin);
      for (int d = 0; d < LANES; ++d) acc += 0.5f * (total[d] * total[d] - sq[d]) + lin[d];
    }
    for (; d0 < D; ++d0) { /* columns past the last whole block */
      float total = 0.0f, sq = 0.0f, lin = 0.0f;
      for (int64_t f = 0; f < F; ++f) {
        float v = xb[f * D + d0];
        total += v;
        sq += v * v;
        lin += w[f * D + d0] * v;
      }
      acc += 0.5f * (total * total - sq) + lin;
    }
    logit[b] = bias + acc;
    if (deep == NULL) continue;
    if (deep_bf16) {
      uint16_t *o = (uint16_t *)deep + b * ld;
      for (int64_t j = 0; j < n; ++j) o[j] = f32_to_bf16(xb[j]);
      for (int64_t e = 0, at = n; e < n_extra; at += widths[e++])
        for (int64_t k = 0; k < widths[e]; ++k) o[at + k] = f32_to_bf16(extra[e][b * widths[e] + k]);
    } else {
      float *o = (float *)deep + b * ld;
      memcpy(o, xb, (size_t)n * sizeof(float));
      for (int64_t e = 0, at = n; e < n_extra; at += widths[e++])
        memcpy(o + at, extra[e] + b * widths[e], (size_t)widths[e] * sizeof(float));
    }
  }
}

/* Gradient of one row's columns [d0, d0 + width) (width <= LANES), plus the row's share of the
 * first-order weights' gradient in `part`; inlined with width = LANES for whole blocks. */
static inline __attribute__((always_inline)) void head_grad_block(const float *restrict xb, const float *restrict w,
                                                                  const uint16_t *gd16, const float *gd32, float gb,
                                                                  int64_t F, int64_t D, int64_t d0, int64_t width,
                                                                  float *restrict out, float *restrict part) {
  float total[LANES] = {0.0f}, add[LANES] = {0.0f};
  for (int64_t f = 0; f < F; ++f)
    for (int64_t d = 0; d < width; ++d) total[d] += xb[f * D + d0 + d];
  for (int64_t f = 0; f < F; ++f) {
    const int64_t o = f * D + d0;
    if (gd16)
      for (int64_t d = 0; d < width; ++d) add[d] = bf16_to_f32(gd16[o + d]);
    else if (gd32)
      for (int64_t d = 0; d < width; ++d) add[d] = gd32[o + d];
    for (int64_t d = 0; d < width; ++d) {
      out[o + d] = gb * (total[d] - xb[o + d] + w[o + d]) + add[d];
      part[o + d] += gb * xb[o + d];
    }
  }
}

VECTOR_CLONES
void recforge_fm_head_backward(const float *x, int64_t B, int64_t F, int64_t D, const float *w, const float *g,
                               const void *gdeep, int64_t ld, int gdeep_bf16, float *gx, float *gw_parts,
                               int64_t block_rows) {
  const int64_t n = F * D, blocks = (B + block_rows - 1) / block_rows;
#pragma omp parallel for schedule(static) if (B * n >= MIN_PARALLEL)
  for (int64_t k = 0; k < blocks; ++k) {
    float *restrict part = gw_parts + k * n;
    for (int64_t j = 0; j < n; ++j) part[j] = 0.0f;
    const int64_t end = (k + 1) * block_rows < B ? (k + 1) * block_rows : B;
    for (int64_t b = k * block_rows; b < end; ++b) {
      const uint16_t *gd16 = gdeep != NULL && gdeep_bf16 ? (const uint16_t *)gdeep + b * ld : NULL;
      const float *gd32 = gdeep != NULL && !gdeep_bf16 ? (const float *)gdeep + b * ld : NULL;
      int64_t d0 = 0;
      for (; d0 + LANES <= D; d0 += LANES)
        head_grad_block(x + b * n, w, gd16, gd32, g[b], F, D, d0, LANES, gx + b * n, part);
      if (d0 < D) head_grad_block(x + b * n, w, gd16, gd32, g[b], F, D, d0, D - d0, gx + b * n, part);
    }
  }
}

/* ---- The ids of a fused table for F sparse fields: ids[b, f] = offsets[f] + cols[f][b] ----
 * Each column cols[f] holds B ids that must lie in [0, vocab[f]). Returns 0, or -1 - (b * F + f) for
 * the first (b, f) out of range (ids is then partly written; the caller discards it). */
int64_t recforge_field_ids(const int64_t *const *cols, int64_t F, int64_t B, const int64_t *offsets,
                           const int64_t *vocab, int64_t *ids) {
  for (int64_t b = 0; b < B; ++b) {
    int64_t *row = ids + b * F;
    for (int64_t f = 0; f < F; ++f) {
      const int64_t v = cols[f][b];
      if (v < 0 || v >= vocab[f]) return -1 - (b * F + f);
      row[f] = offsets[f] + v;
    }
  }
  return 0;
}

/* ---- A training-mode batch norm, then ReLU, then dropout, on a bfloat16 (B, d) block ----
 * Forward: per column j the batch mean and biased variance of y in float32, accumulated row by row
 * (contiguous, vectorised) over blocks of `block_rows` rows as sums of y - c and (y - c)^2, c being row
 * 0 (a shift that keeps the variance's cancellation small); the blocks' partials go to `parts`
 * (2 * d floats per block) and are summed in block order, so the result does not depend on the
 * thread count. rstd = 1 / sqrt(var + eps); v = (y - mean) rstd gamma + beta; out = v * s, with s
 * the dropout factor of element b * d + j as recforge_dropout_forward draws it for the same seed
 * (so the masks are the same), and 0 where v <= 0; `mask` records s != 0. gamma / beta may be NULL.
 * Backward: g1 = gout * mask * scale; per column sg = sum_b g1 and sgx = sum_b g1 xhat (the
 * gradients of beta and gamma), by the same blocks; gy = gamma rstd (g1 - sg / B - xhat sgx / B). */

VECTOR_CLONES
void recforge_bn_relu_dropout_forward(const uint16_t *y, int64_t B, int64_t d, const float *gamma, const float *beta,
                                      float eps, uint32_t threshold, float scale, uint64_t seed, uint16_t *out,
                                      uint8_t *mask, float *mean, float *var, float *rstd, float *parts,
                                      int64_t block_rows) {
  const int64_t blocks = (B + block_rows - 1) / block_rows;
  float shift[d];
  for (int64_t j = 0; j < d; ++j) shift[j] = bf16_to_f32(y[j]);
#pragma omp parallel for schedule(static) if (B * d >= MIN_PARALLEL)
  for (int64_t k = 0; k < blocks; ++k) {
    float *restrict s1 = parts + k * 2 * d, *restrict s2 = s1 + d;
    for (int64_t j = 0; j < d; ++j) s1[j] = s2[j] = 0.0f;
    const int64_t end = (k + 1) * block_rows < B ? (k + 1) * block_rows : B;
    for (int64_t b = k * block_rows; b < end; ++b) {
      const uint16_t *restrict yb = y + b * d;
      for (int64_t j = 0; j < d; ++j) {
        float c = bf16_to_f32(yb[j]) - shift[j];
        s1[j] += c;
        s2[j] += c * c;
      }
    }
  }
  float mul_col[d], add_col[d]; /* v = y * mul_col + add_col: the normalisation and the affine map */
  for (int64_t j = 0; j < d; ++j) {
    float a = 0.0f, q = 0.0f;
    for (int64_t k = 0; k < blocks; ++k) {
      a += parts[k * 2 * d + j];
      q += parts[k * 2 * d + d + j];
    }
    const float m = a / (float)B, v = q / (float)B - m * m;
    mean[j] = shift[j] + m;
    var[j] = v > 0.0f ? v : 0.0f;
    rstd[j] = 1.0f / sqrtf(var[j] + eps);
    mul_col[j] = rstd[j] * (gamma ? gamma[j] : 1.0f);
    add_col[j] = (beta ? beta[j] : 0.0f) - mean[j] * mul_col[j];
  }
#pragma omp parallel for schedule(static) if (B * d >= MIN_PARALLEL)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j0 = 0; j0 < d; j0 += BLOCK) {
      const int64_t count = d - j0 < BLOCK ? d - j0 : BLOCK;
      float mul[BLOCK];
      draw_scale(mul, b * d + j0, count, threshold, scale, seed);
      const uint16_t *restrict yb = y + b * d + j0;
      uint16_t *restrict o = out + b * d + j0;
      uint8_t *restrict m = mask + b * d + j0;
      const float *restrict mc = mul_col + j0, *restrict ac = add_col + j0;
      for (int64_t k = 0; k < count; ++k) {
        float v = bf16_to_f32(yb[k]) * mc[k] + ac[k];
        float f = v <= 0.0f ? 0.0f : mul[k];
        m[k] = f != 0.0f;
        o[k] = f32_to_bf16(v * f);
      }
    }
  }
}

VECTOR_CLONES
void recforge_bn_relu_dropout_backward(const uint16_t *y, const uint16_t *gout, const uint8_t *mask, int64_t B,
                                       int64_t d, const float *mean, const float *rstd, const float *gamma,
                                       float scale, uint16_t *gy, float *dgamma, float *dbeta, float *parts,
                                       int64_t block_rows) {
  const int64_t blocks = (B + block_rows - 1) / block_rows;
#pragma omp parallel for schedule(static) if (B * d >= MIN_PARALLEL)
  for (int64_t k = 0; k < blocks; ++k) {
    float *restrict a = parts + k * 2 * d, *restrict c = a + d;
    for (int64_t j = 0; j < d; ++j) a[j] = c[j] = 0.0f;
    const int64_t end = (k + 1) * block_rows < B ? (k + 1) * block_rows : B;
    for (int64_t b = k * block_rows; b < end; ++b) {
      const uint16_t *restrict gb = gout + b * d, *restrict yb = y + b * d;
      const uint8_t *restrict mb = mask + b * d;
      for (int64_t j = 0; j < d; ++j) {
        float g1 = bf16_to_f32(gb[j]) * (float)mb[j];
        a[j] += g1;
        c[j] += g1 * (bf16_to_f32(yb[j]) - mean[j]);
      }
    }
  }
  /* gy = k (g1 - sg / B - xhat sgx / B) = k' g + e y + f per column, k = gamma rstd, k' = k scale */
  float k_col[d], e_col[d], f_col[d];
  for (int64_t j = 0; j < d; ++j) {
    float a = 0.0f, c = 0.0f;
    for (int64_t k = 0; k < blocks; ++k) {
      a += parts[k * 2 * d + j];
      c += parts[k * 2 * d + d + j];
    }
    dbeta[j] = a * scale;
    dgamma[j] = c * scale * rstd[j];
    const float k = (gamma ? gamma[j] : 1.0f) * rstd[j], r = k * rstd[j] * dgamma[j] / (float)B;
    k_col[j] = k * scale;
    e_col[j] = -r;
    f_col[j] = r * mean[j] - k * dbeta[j] / (float)B;
  }
#pragma omp parallel for schedule(static) if (B * d >= MIN_PARALLEL)
  for (int64_t b = 0; b < B; ++b) {
    const uint16_t *restrict gb = gout + b * d, *restrict yb = y + b * d;
    const uint8_t *restrict mb = mask + b * d;
    uint16_t *restrict o = gy + b * d;
    for (int64_t j = 0; j < d; ++j)
      o[j] = f32_to_bf16(k_col[j] * (bf16_to_f32(gb[j]) * (float)mb[j]) + e_col[j] * bf16_to_f32(yb[j]) + f_col[j]);
  }
}
