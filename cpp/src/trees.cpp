#include "defectspace/trees.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "defectspace/parallel.hpp"

namespace defectspace {

void check_tree_ensemble(const TreeEnsemble& trees, std::size_t n_features) {
  if (trees.offsets[0] != 0) throw std::invalid_argument("tree ensemble: offsets must start at 0");
  for (std::size_t t = 0; t < trees.n_trees; ++t) {
    const std::int64_t begin = trees.offsets[t];
    const std::int64_t size = trees.offsets[t + 1] - begin;
    if (size < 1) throw std::invalid_argument("tree ensemble: tree " + std::to_string(t) + " has no node");
    for (std::int64_t k = 0; k < size; ++k) {
      const auto i = static_cast<std::size_t>(begin + k);
      if (trees.is_leaf[i]) continue;
      const std::int32_t f = trees.feature[i];
      const std::int32_t l = trees.left[i];
      const std::int32_t r = trees.right[i];
      if (f < 0 || static_cast<std::size_t>(f) >= n_features || l <= k || r <= k || l >= size || r >= size)
        throw std::invalid_argument("tree ensemble: node " + std::to_string(k) + " of tree " + std::to_string(t) +
                                    " has feature " + std::to_string(f) + " (of " + std::to_string(n_features) +
                                    ") or children " + std::to_string(l) + ", " + std::to_string(r) +
                                    " out of range");
    }
  }
}

void predict_tree_ensemble(const TreeEnsemble& trees, const double* x, std::size_t n, std::size_t n_features,
                           double baseline, double* out, std::size_t n_threads) {
  const std::int64_t members[2] = {0, static_cast<std::int64_t>(trees.n_trees)};
  predict_tree_ensembles(trees, members, 1, &baseline, x, n, n_features, out, n_threads);
}

void predict_tree_ensembles(const TreeEnsemble& trees, const std::int64_t* member_trees, std::size_t n_members,
                            const double* baselines, const double* x, std::size_t n, std::size_t n_features,
                            double* out, std::size_t n_threads) {
  // Blocks of rows walk every tree of every member before the next block: a block's rows stay in
  // cache for all the trees (one member at a time over all rows pulled every row from memory once
  // per member), one tree's nodes stay in L1 while the block passes through it. A row adds its trees
  // in order, member by member, so the sums have the same bits as a row-at-a-time walk.
  constexpr std::size_t kBlock = 32;
  parallel_for(n, resolve_threads(n_threads, n, 64), [&](std::size_t begin, std::size_t end, std::size_t) {
    double sums[kBlock];
    for (std::size_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::size_t nb = end - b0 < kBlock ? end - b0 : kBlock;
      const double* block = x + b0 * n_features;
      for (std::size_t m = 0; m < n_members; ++m) {
        for (std::size_t r = 0; r < nb; ++r) sums[r] = baselines[m];
        for (auto t = static_cast<std::size_t>(member_trees[m]); t < static_cast<std::size_t>(member_trees[m + 1]);
             ++t) {
          const auto base = static_cast<std::size_t>(trees.offsets[t]);
          const std::int32_t* feature = trees.feature + base;
          const double* threshold = trees.threshold + base;
          const std::uint8_t* missing_left = trees.missing_left + base;
          const std::int32_t* left = trees.left + base;
          const std::int32_t* right = trees.right + base;
          const std::uint8_t* is_leaf = trees.is_leaf + base;
          for (std::size_t r = 0; r < nb; ++r) {
            const double* row = block + r * n_features;
            std::int32_t node = 0;
            while (!is_leaf[node]) {
              const double v = row[feature[node]];
              const bool go_left = std::isnan(v) ? missing_left[node] != 0 : v <= threshold[node];
              node = go_left ? left[node] : right[node];
            }
            sums[r] += trees.value[base + static_cast<std::size_t>(node)];
          }
        }
        for (std::size_t r = 0; r < nb; ++r) out[m * n + b0 + r] = sums[r];
      }
    }
  });
}

}  // namespace defectspace
