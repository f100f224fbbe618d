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
  parallel_for(n, resolve_threads(n_threads, n), [&](std::size_t begin, std::size_t end, std::size_t) {
    for (std::size_t r = begin; r < end; ++r) {
      const double* row = x + r * n_features;
      double sum = baseline;
      for (std::size_t t = 0; t < trees.n_trees; ++t) {
        const std::int64_t base = trees.offsets[t];
        std::int64_t node = 0;
        while (!trees.is_leaf[base + node]) {
          const auto i = static_cast<std::size_t>(base + node);
          const double v = row[trees.feature[i]];
          const bool go_left = std::isnan(v) ? trees.missing_left[i] != 0 : v <= trees.threshold[i];
          node = go_left ? trees.left[i] : trees.right[i];
        }
        sum += trees.value[base + node];
      }
      out[r] = sum;
    }
  });
}

}  // namespace defectspace
