// Small fp32 matrix products for the CPU reference: C = alpha·A·Bᵀ (+ C), all row-major, where every
// output is one dot product over contiguous memory. Blocked so a column block of B stays in L2 while
// the rows stream past, with an epilogue called on each finished tile while it is still in cache (the
// seed layer fuses its blend and telemetry there). Each dot product sums 4 interleaved lanes, then
// the lanes pairwise, then the tail: the same order for every tile shape, so a result depends only on
// its inputs and K, never on where it sits in C.
#pragma once

#include <algorithm>

namespace esper::kernels::cpu {

struct NoEpilogue {
  void operator()(int, int, int, int) const {}
};

namespace detail {

inline constexpr int kLanes = 4;

template <int MR, int NR>
inline void micro_tile(int K, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float alpha,
                       bool accumulate) {
  float acc[MR][NR][kLanes] = {};
  int k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) {
        for (int l = 0; l < kLanes; ++l) acc[i][j][l] += a[i * lda + k + l] * b[j * ldb + k + l];
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = (acc[i][j][0] + acc[i][j][1]) + (acc[i][j][2] + acc[i][j][3]);
      for (int t = k; t < K; ++t) s += a[i * lda + t] * b[j * ldb + t];
      float& out = c[i * ldc + j];
      out = accumulate ? out + alpha * s : alpha * s;
    }
  }
}

}  // namespace detail

template <class Epilogue = NoEpilogue>
void gemm_nt(int M, int N, int K, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float alpha,
             bool accumulate, Epilogue&& epilogue = {}) {
  constexpr int kRowBlock = 4, kColTile = 2, kColBlock = 64;
  for (int n0 = 0; n0 < N; n0 += kColBlock) {
    const int n1 = std::min(N, n0 + kColBlock);
    for (int m0 = 0; m0 < M; m0 += kRowBlock) {
      const int m1 = std::min(M, m0 + kRowBlock);
      for (int n = n0; n < n1; n += kColTile) {
        const float* ap = a + static_cast<long>(m0) * lda;
        const float* bp = b + static_cast<long>(n) * ldb;
        float* cp = c + static_cast<long>(m0) * ldc + n;
        if (m1 - m0 == kRowBlock && n + kColTile <= n1) {
          detail::micro_tile<kRowBlock, kColTile>(K, ap, lda, bp, ldb, cp, ldc, alpha, accumulate);
        } else {
          for (int i = 0; i < m1 - m0; ++i) {
            for (int j = 0; j < std::min(kColTile, n1 - n); ++j) {
              detail::micro_tile<1, 1>(K, ap + static_cast<long>(i) * lda, lda, bp + static_cast<long>(j) * ldb, ldb,
                                       cp + static_cast<long>(i) * ldc + j, ldc, alpha, accumulate);
            }
          }
        }
      }
      epilogue(m0, m1, n0, n1);
    }
  }
}

// dst (cols×rows) = srcᵀ, src rows×cols.
inline void transpose(int rows, int cols, const float* src, int ld_src, float* dst, int ld_dst) {
  constexpr int kTile = 32;
  for (int r0 = 0; r0 < rows; r0 += kTile) {
    for (int c0 = 0; c0 < cols; c0 += kTile) {
      for (int r = r0; r < std::min(rows, r0 + kTile); ++r) {
        for (int col = c0; col < std::min(cols, c0 + kTile); ++col) {
          dst[static_cast<long>(col) * ld_dst + r] = src[static_cast<long>(r) * ld_src + col];
        }
      }
    }
  }
}

}  // namespace esper::kernels::cpu
