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

static int64_t group_rows(int64_t V, int64_t D, const int64_t *ids, const float *grad, int64_t nnz,
                          int32_t *slot, int64_t *uniq, float *acc) {
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
int64_t recforge_lazy_adam_rows(float *weight, float *moments, int64_t V, int64_t D, const int64_t *ids,
                                const float *grad, int64_t nnz, int32_t *slot, int64_t *uniq, float *acc,
                                float b1, float b2, float eps, float step_size, float inv_bc2, float decay) {
  int64_t n = group_rows(V, D, ids, grad, nnz, slot, uniq, acc);
  if (n < 0) return n;
  const float c1 = 1.0f - b1, c2 = 1.0f - b2;
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
int64_t recforge_rowwise_adagrad_rows(float *weight, float *sums, int64_t V, int64_t D, int64_t K,
                                      const int64_t *ids, const float *grad, int64_t nnz, int32_t *slot,
                                      int64_t *uniq, float *acc, float lr, float eps, float weight_decay) {
  int64_t n = group_rows(V, D, ids, grad, nnz, slot, uniq, acc);
  if (n < 0) return n;
  const int64_t width = D / K;
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
