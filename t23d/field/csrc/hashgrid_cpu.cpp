// Multi-resolution hash-grid encoding on CPU: forward, table gradient and input gradient.
//
// The specification is `hash_grid_encode_reference` in t23d/field/hashgrid.py (tiny-cuda-nn layout):
// for level l with float32 scale s_l, resolution r_l and T_l = offsets[l+1] - offsets[l] feature vectors,
//   p = clamp(x, 0, 1) * s_l + 0.5      (two float32 roundings: build with -ffp-contract=off, no FMA)
//   g = floor(p), t = p - g,
//   corner c = g + bits(c), bits(c) = ((c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1),
//   index = dense ? (c0 + c1 r + c2 r^2) % T_l : ((c0 * 1) ^ (c1 * 2654435761) ^ (c2 * 805459861)) % T_l,
//   weight_c = ((w0 * w1) * w2) with w_d = bit ? t_d : 1 - t_d,
//   out[n, l*F + f] = sum_c weight_c * table[offsets[l] + index_c, f].
//
// Performance notes (2 cores, 2^18 points, 16 levels, 2^19 entries per level):
// - Levels are the outer loop everywhere, so one level's slice of the table (4 MiB at F=2) stays in the
//   last-level cache while all points visit it; the whole table (~50 MiB) does not fit.
// - Work per level is written to / read from level-major scratch [L, N, F] (kept per calling thread and
//   reused across calls) so that the inner loop streams contiguous memory; one transpose converts to /
//   from the user-facing [N, L*F] (measured: faster than writing the strided output directly).
// - Software prefetching T23D_PREFETCH_AHEAD points ahead (default 16) makes the hashed levels,
//   whose table accesses are random, 20-50% faster (measured, single thread).
// - The table gradient is a scatter-add. Each thread owns whole levels (disjoint slices of the table)
//   and visits points in order, so the result is bit-identical run to run and independent of the number
//   of threads, with no atomics (it even matches torch's serial index_put_ order bit for bit). Its
//   parallelism is capped at L threads: ample here. The input gradient is accumulated per point (points
//   are partitioned statically across threads, levels visited in order), hence also deterministic.
// - The feature count F is a template parameter (1, 2, 4, 8 specialised; anything else runs generic code).

#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr uint32_t kPrime1 = 2654435761u;
constexpr uint32_t kPrime2 = 805459861u;

// Constants of one level.
struct Level {
  float scale;          // s_l, exactly the float32 value of level_layout()
  uint32_t resolution;  // r_l
  int64_t offset;       // first feature vector of the level in the table
  uint32_t size;        // T_l, feature vectors in the level
  bool dense;           // r_l^3 <= T_l: dense indexing
  uint32_t mask;        // T_l - 1 when T_l is a power of two (always for hashed levels), else 0
};

std::vector<Level> make_levels(const std::vector<double>& scales, const std::vector<int64_t>& resolutions,
                               const std::vector<int64_t>& offsets) {
  TORCH_CHECK(scales.size() == resolutions.size() && offsets.size() == scales.size() + 1,
              "hash grid: inconsistent level layout (", scales.size(), " scales, ", resolutions.size(),
              " resolutions, ", offsets.size(), " offsets)");
  std::vector<Level> levels(scales.size());
  for (size_t l = 0; l < scales.size(); ++l) {
    const int64_t size = offsets[l + 1] - offsets[l];
    const int64_t res = resolutions[l];
    TORCH_CHECK(size > 0 && size <= (int64_t{1} << 32) - 1, "hash grid: level ", l, " has invalid size ", size);
    TORCH_CHECK(res > 0 && res < (int64_t{1} << 21), "hash grid: level ", l, " has invalid resolution ", res);
    Level& lv = levels[l];
    lv.scale = static_cast<float>(scales[l]);
    lv.resolution = static_cast<uint32_t>(res);
    lv.offset = offsets[l];
    lv.size = static_cast<uint32_t>(size);
    lv.dense = res * res * res <= size;
    lv.mask = (size & (size - 1)) == 0 ? static_cast<uint32_t>(size - 1) : 0u;
  }
  return levels;
}

// One point's cell in one level: corner indices (relative to the level) and trilinear terms.
struct Cell {
  uint32_t index[8];
  float w[3][2];  // w[d][0] = 1 - t_d, w[d][1] = t_d
};

inline float clamp01(float v) {
  // NaN propagates (like torch.clamp); it later selects grid cell 0, so memory accesses stay in range.
  return v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
}

inline void locate(const Level& lv, const float* __restrict x, Cell& cell) {
  uint32_t g[3];
  for (int d = 0; d < 3; ++d) {
    const float pos = clamp01(x[d]) * lv.scale + 0.5f;  // no FMA: must round like the reference
    const float fl = std::floor(pos);
    const float t = pos - fl;
    g[d] = fl >= 0.f ? static_cast<uint32_t>(fl) : 0u;  // also maps NaN to 0
    cell.w[d][0] = 1.f - t;
    cell.w[d][1] = t;
  }
  if (lv.dense) {
    const uint64_t r = lv.resolution;
    for (int c = 0; c < 8; ++c) {
      uint64_t i = (g[0] + (c & 1)) + (g[1] + ((c >> 1) & 1)) * r + (g[2] + ((c >> 2) & 1)) * r * r;
      if (i >= lv.size) i %= lv.size;  // only corners on the far boundary wrap
      cell.index[c] = static_cast<uint32_t>(i);
    }
  } else {
    const uint32_t h0[2] = {g[0], g[0] + 1u};
    const uint32_t h1[2] = {g[1] * kPrime1, (g[1] + 1u) * kPrime1};
    const uint32_t h2[2] = {g[2] * kPrime2, (g[2] + 1u) * kPrime2};
    if (lv.mask != 0u || lv.size == 1u) {
      for (int c = 0; c < 8; ++c) cell.index[c] = (h0[c & 1] ^ h1[(c >> 1) & 1] ^ h2[c >> 2]) & lv.mask;
    } else {
      for (int c = 0; c < 8; ++c) cell.index[c] = (h0[c & 1] ^ h1[(c >> 1) & 1] ^ h2[c >> 2]) % lv.size;
    }
  }
}

inline float corner_weight(const Cell& cell, int c) {
  return (cell.w[0][c & 1] * cell.w[1][(c >> 1) & 1]) * cell.w[2][c >> 2];
}

// Points are processed through a small ring of located cells: the cell of point i + kPrefetchAhead is
// computed (and its table rows prefetched) while point i is processed, hiding the latency of the random
// table accesses of the hashed levels. Corners that differ only in c0 are usually adjacent rows (always in
// dense levels; in hashed ones when g0 is even), so prefetching the 4 even corners covers most lines.
#ifndef T23D_PREFETCH_AHEAD
#define T23D_PREFETCH_AHEAD 16
#endif
constexpr int64_t kPrefetchAhead = T23D_PREFETCH_AHEAD;
constexpr int64_t kRing = 32;  // power of two > kPrefetchAhead
static_assert(kPrefetchAhead < kRing && (kRing & (kRing - 1)) == 0, "ring size");

template <bool kWrite>
class CellPipeline {
 public:
  CellPipeline(const Level& lv, const float* x, const float* base, int feats, int64_t begin, int64_t end)
      : lv_(lv), x_(x), base_(base), feats_(feats), end_(end) {
    for (int64_t i = begin; i < std::min(begin + kPrefetchAhead, end); ++i) fetch(i);
  }
  // The cell of point i (call with consecutive i from begin).
  const Cell& next(int64_t i) {
    if (i + kPrefetchAhead < end_) fetch(i + kPrefetchAhead);
    return ring_[i & (kRing - 1)];
  }

 private:
  void fetch(int64_t i) {
    Cell& cell = ring_[i & (kRing - 1)];
    locate(lv_, x_ + i * 3, cell);
    if (kPrefetchAhead > 0) {
      for (int c = 0; c < 8; c += 2) {
        __builtin_prefetch(base_ + static_cast<int64_t>(cell.index[c]) * feats_, kWrite, 1);
      }
    }
  }
  const Level& lv_;
  const float* x_;
  const float* base_;
  int feats_;
  int64_t end_;
  Cell ring_[kRing];
};

// Contiguous block [begin, end) of [0, n) for thread `tid` of `num`: the same in every level of a kernel.
inline void thread_range(int64_t n, int tid, int num, int64_t& begin, int64_t& end) {
  const int64_t chunk = (n + num - 1) / num;
  begin = std::min(n, chunk * tid);
  end = std::min(n, begin + chunk);
}

// ------------------------------------------------------------------------------------------------ forward

// out_lm [L, N, F] <- encoding of x [N, 3].
template <int F>
void forward_impl(const float* __restrict x, const float* __restrict table, float* __restrict out_lm, int64_t n,
                  const std::vector<Level>& levels, int feats_rt, int num_threads) {
  const int feats = F > 0 ? F : feats_rt;
  const int64_t num_levels = static_cast<int64_t>(levels.size());
#pragma omp parallel num_threads(num_threads)
  {
    int64_t begin, end;
    thread_range(n, omp_get_thread_num(), omp_get_num_threads(), begin, end);
    // Every thread walks the levels in the same order, so one level's table is shared in the cache.
    for (int64_t l = 0; l < num_levels; ++l) {
      const Level& lv = levels[l];
      const float* __restrict tab = table + lv.offset * feats;
      float* __restrict out = out_lm + l * n * feats;
      CellPipeline<false> cells(lv, x, tab, feats, begin, end);
      for (int64_t i = begin; i < end; ++i) {
        const Cell& cell = cells.next(i);
        float acc[F > 0 ? F : 16];
        for (int f = 0; f < feats; ++f) acc[f] = 0.f;
        for (int c = 0; c < 8; ++c) {
          const float w = corner_weight(cell, c);
          const float* __restrict row = tab + static_cast<int64_t>(cell.index[c]) * feats;
          for (int f = 0; f < feats; ++f) acc[f] += w * row[f];
        }
        for (int f = 0; f < feats; ++f) out[i * feats + f] = acc[f];
      }
    }
  }
}

// ----------------------------------------------------------------------------------------------- backward

// grad_table [T_total, F] = scatter of grad_lm [L, N, F]; each thread owns whole levels.
template <int F>
void backward_table_impl(const float* __restrict x, const float* __restrict grad_lm, float* __restrict grad_table,
                         int64_t n, const std::vector<Level>& levels, int feats_rt, int num_threads) {
  const int feats = F > 0 ? F : feats_rt;
  const int64_t num_levels = static_cast<int64_t>(levels.size());
  // Levels go to threads dynamically; the sum for each table entry is still accumulated by one thread
  // in point order, so the result does not depend on the schedule or the number of threads.
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1)
  for (int64_t l = 0; l < num_levels; ++l) {
    const Level& lv = levels[l];
    float* __restrict gtab = grad_table + lv.offset * feats;
    const float* __restrict g = grad_lm + l * n * feats;
    // grad_table arrives uninitialised: zeroing the slice here first-touches it in the owning thread and
    // leaves it hot in the cache for the scatter.
    std::fill(gtab, gtab + static_cast<int64_t>(lv.size) * feats, 0.f);
    CellPipeline<true> cells(lv, x, gtab, feats, 0, n);
    for (int64_t i = 0; i < n; ++i) {
      const Cell& cell = cells.next(i);
      float gi[F > 0 ? F : 16];
      for (int f = 0; f < feats; ++f) gi[f] = g[i * feats + f];
      for (int c = 0; c < 8; ++c) {
        const float w = corner_weight(cell, c);
        float* __restrict row = gtab + static_cast<int64_t>(cell.index[c]) * feats;
        for (int f = 0; f < feats; ++f) row[f] += w * gi[f];
      }
    }
  }
}

// grad_x [N, 3] = d(sum grad_out * out)/dx; zero where x lies outside [0, 1] (like torch.clamp's backward).
template <int F>
void backward_x_impl(const float* __restrict x, const float* __restrict table, const float* __restrict grad_lm,
                     float* __restrict grad_x, int64_t n, const std::vector<Level>& levels, int feats_rt,
                     int num_threads) {
  const int feats = F > 0 ? F : feats_rt;
  const int64_t num_levels = static_cast<int64_t>(levels.size());
#pragma omp parallel num_threads(num_threads)
  {
    // Each thread owns a block of points and accumulates their gradient level by level, in order.
    int64_t begin, end;
    thread_range(n, omp_get_thread_num(), omp_get_num_threads(), begin, end);
    for (int64_t l = 0; l < num_levels; ++l) {
      const Level& lv = levels[l];
      const float* __restrict tab = table + lv.offset * feats;
      const float* __restrict g = grad_lm + l * n * feats;
      CellPipeline<false> cells(lv, x, tab, feats, begin, end);
      for (int64_t i = begin; i < end; ++i) {
        const Cell& cell = cells.next(i);
        // dot_c = <grad_out, feature of corner c>; d weight_c / d t_d = +-(product of the other two terms)
        float dt[3] = {0.f, 0.f, 0.f};
        for (int c = 0; c < 8; ++c) {
          const float* __restrict row = tab + static_cast<int64_t>(cell.index[c]) * feats;
          float dot = 0.f;
          for (int f = 0; f < feats; ++f) dot += g[i * feats + f] * row[f];
          const int b0 = c & 1, b1 = (c >> 1) & 1, b2 = c >> 2;
          const float s0 = b0 ? dot : -dot, s1 = b1 ? dot : -dot, s2 = b2 ? dot : -dot;
          dt[0] += s0 * (cell.w[1][b1] * cell.w[2][b2]);
          dt[1] += s1 * (cell.w[0][b0] * cell.w[2][b2]);
          dt[2] += s2 * (cell.w[0][b0] * cell.w[1][b1]);
        }
        for (int d = 0; d < 3; ++d) grad_x[i * 3 + d] += dt[d] * lv.scale;
      }
    }
    for (int64_t i = begin; i < end; ++i) {
      for (int d = 0; d < 3; ++d) {
        const float v = x[i * 3 + d];
        if (!(v >= 0.f && v <= 1.f)) grad_x[i * 3 + d] = 0.f;
      }
    }
  }
}

// ------------------------------------------------------------------------------------- layout transposes

// [L, N, F] -> [N, L*F]
void level_major_to_point_major(const float* __restrict src, float* __restrict dst, int64_t n, int64_t num_levels,
                                int feats, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l < num_levels; ++l) {
      for (int f = 0; f < feats; ++f) dst[(i * num_levels + l) * feats + f] = src[(l * n + i) * feats + f];
    }
  }
}

// [N, L*F] -> [L, N, F]
void point_major_to_level_major(const float* __restrict src, float* __restrict dst, int64_t n, int64_t num_levels,
                                int feats, int num_threads) {
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t l = 0; l < num_levels; ++l) {
      for (int f = 0; f < feats; ++f) dst[(l * n + i) * feats + f] = src[(i * num_levels + l) * feats + f];
    }
  }
}

// ----------------------------------------------------------------------------------------------- dispatch

template <typename Fn>
void dispatch_features(int feats, Fn&& fn) {
  switch (feats) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: fn(std::integral_constant<int, 0>{}); break;  // generic, runtime F (<= 16)
  }
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& table, const std::vector<int64_t>& offsets) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "hash grid cpp: x and table must be CPU tensors");
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && table.scalar_type() == torch::kFloat32,
              "hash grid cpp: x and table must be float32");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "hash grid cpp: x must be [N, 3], got ", x.sizes());
  TORCH_CHECK(table.dim() == 2 && table.size(0) == offsets.back(), "hash grid cpp: table must be [",
              offsets.back(), ", F], got ", table.sizes());
  TORCH_CHECK(table.size(1) >= 1 && table.size(1) <= 16, "hash grid cpp: 1 <= F <= 16 features per level, got ",
              table.size(1));
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous(), "hash grid cpp: x and table must be contiguous");
}

// Level-major scratch [L, N, F], kept per calling thread and reused across calls: a fresh 32 MiB buffer
// costs ~14 ms of page faults per call on these machines, more than the transpose that uses it. It only
// grows (to the largest batch seen); at 2^18 points x 16 levels x 2 features it holds 32 MiB.
float* level_major_scratch(int64_t count) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < count) {
    std::vector<float>().swap(buffer);
    buffer.resize(count);
  }
  return buffer.data();
}

int resolve_threads(int64_t num_threads) {
  return num_threads > 0 ? static_cast<int>(num_threads) : at::get_num_threads();
}

}  // namespace

// x [N, 3], table [T_total, F] -> out [N, L*F]
torch::Tensor hash_grid_forward(const torch::Tensor& x, const torch::Tensor& table, const std::vector<double>& scales,
                                const std::vector<int64_t>& resolutions, const std::vector<int64_t>& offsets,
                                int64_t num_threads) {
  check_inputs(x, table, offsets);
  const std::vector<Level> levels = make_levels(scales, resolutions, offsets);
  const int64_t n = x.size(0), num_levels = static_cast<int64_t>(levels.size());
  const int feats = static_cast<int>(table.size(1));
  const int threads = resolve_threads(num_threads);
  auto out = torch::empty({n, num_levels * feats}, table.options());
  if (n == 0 || num_levels == 0) return out;
  float* out_lm = level_major_scratch(num_levels * n * feats);  // [L, N, F]
  dispatch_features(feats, [&](auto f_const) {
    constexpr int F = decltype(f_const)::value;
    forward_impl<F>(x.data_ptr<float>(), table.data_ptr<float>(), out_lm, n, levels, feats, threads);
  });
  level_major_to_point_major(out_lm, out.data_ptr<float>(), n, num_levels, feats, threads);
  return out;
}

// grad_out [N, L*F] -> (grad_table [T_total, F] or undefined, grad_x [N, 3] or undefined)
std::vector<torch::Tensor> hash_grid_backward(const torch::Tensor& grad_out, const torch::Tensor& x,
                                              const torch::Tensor& table, const std::vector<double>& scales,
                                              const std::vector<int64_t>& resolutions,
                                              const std::vector<int64_t>& offsets, bool need_table_grad,
                                              bool need_x_grad, int64_t num_threads) {
  check_inputs(x, table, offsets);
  const std::vector<Level> levels = make_levels(scales, resolutions, offsets);
  const int64_t n = x.size(0), num_levels = static_cast<int64_t>(levels.size());
  const int feats = static_cast<int>(table.size(1));
  const int threads = resolve_threads(num_threads);
  TORCH_CHECK(grad_out.scalar_type() == torch::kFloat32 && grad_out.is_contiguous() && grad_out.dim() == 2 &&
                  grad_out.size(0) == n && grad_out.size(1) == num_levels * feats,
              "hash grid cpp: grad_out must be contiguous float32 [", n, ", ", num_levels * feats, "], got ",
              grad_out.sizes());
  torch::Tensor grad_table, grad_x;
  if (need_table_grad) grad_table = torch::empty_like(table);  // zeroed level by level in backward_table_impl
  if (need_x_grad) grad_x = torch::zeros_like(x);
  if (n == 0 || num_levels == 0 || (!need_table_grad && !need_x_grad)) {
    if (need_table_grad) grad_table.zero_();
    return {grad_table, grad_x};
  }

  float* grad_lm = level_major_scratch(num_levels * n * feats);  // [L, N, F]
  point_major_to_level_major(grad_out.data_ptr<float>(), grad_lm, n, num_levels, feats, threads);
  dispatch_features(feats, [&](auto f_const) {
    constexpr int F = decltype(f_const)::value;
    if (need_table_grad) {
      backward_table_impl<F>(x.data_ptr<float>(), grad_lm, grad_table.data_ptr<float>(), n, levels,
                             feats, threads);
    }
    if (need_x_grad) {
      backward_x_impl<F>(x.data_ptr<float>(), table.data_ptr<float>(), grad_lm,
                         grad_x.data_ptr<float>(), n, levels, feats, threads);
    }
  });
  return {grad_table, grad_x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "t23d multi-resolution hash-grid encoding, CPU kernel (forward, table and input gradients)";
  m.def("forward", &hash_grid_forward, "x [N,3], table [T,F] -> [N, L*F]", pybind11::arg("x"),
        pybind11::arg("table"), pybind11::arg("scales"), pybind11::arg("resolutions"), pybind11::arg("offsets"),
        pybind11::arg("num_threads") = 0);
  m.def("backward", &hash_grid_backward, "grad_out [N, L*F] -> (grad_table [T,F] | None, grad_x [N,3] | None)",
        pybind11::arg("grad_out"), pybind11::arg("x"), pybind11::arg("table"), pybind11::arg("scales"),
        pybind11::arg("resolutions"), pybind11::arg("offsets"), pybind11::arg("need_table_grad"),
        pybind11::arg("need_x_grad"), pybind11::arg("num_threads") = 0);
}
