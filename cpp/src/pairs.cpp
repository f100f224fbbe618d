#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "defectspace/detail/canonical_row.hpp"
#include "defectspace/detail/sites_by_type.hpp"
#include "defectspace/enumerate.hpp"
#include "defectspace/parallel.hpp"
#include "defectspace/random.hpp"

namespace defectspace {

void random_images(const Canonicalizer& canon, const std::uint8_t* states, std::size_t n_rows, std::uint64_t seed,
                   std::uint8_t* images, std::int64_t* ops, std::size_t n_threads) {
  canon.validate(states, n_rows);
  const std::size_t n = canon.n_sites();
  const SymmetryGroup& G = canon.group();
  parallel_for(n_rows, resolve_threads(n_threads, n_rows), [&](std::size_t begin, std::size_t end, std::size_t) {
    for (std::size_t r = begin; r < end; ++r) {
      Rng rng(seed, r);
      const auto g = static_cast<std::size_t>(rng.below(G.order()));
      const auto p = G.element(g);
      const std::uint8_t* x = states + r * n;
      std::uint8_t* y = images + r * n;
      for (std::size_t s = 0; s < n; ++s) y[p[s]] = x[s];
      if (ops) ops[r] = static_cast<std::int64_t>(g);
    }
  });
}

void negatives(const Canonicalizer& canon, const std::uint8_t* states, std::size_t n_rows, const std::int32_t* neighbors,
               std::size_t n_neighbors, double hard_fraction, std::size_t max_tries, std::uint64_t seed,
               std::uint8_t* out, std::int8_t* kind_out, std::size_t n_threads) {
  canon.validate(states, n_rows);
  const std::size_t n = canon.n_sites();
  const std::size_t K = canon.n_kinds();
  if (!(hard_fraction >= 0.0 && hard_fraction <= 1.0))
    throw std::invalid_argument("hard_fraction must lie in [0, 1], got " + std::to_string(hard_fraction));
  for (std::size_t i = 0; i < n * n_neighbors; ++i)
    if (neighbors[i] < -1 || neighbors[i] >= static_cast<std::int32_t>(n))
      throw std::invalid_argument("neighbour table entry " + std::to_string(i) + " is " + std::to_string(neighbors[i]) +
                                  ", outside -1.." + std::to_string(n - 1));
  const auto& types = canon.group().site_types();
  const auto by_type = detail::sites_by_type(canon.group());

  parallel_for(n_rows, resolve_threads(n_threads, n_rows, 64), [&](std::size_t begin, std::size_t end, std::size_t) {
    detail::Workspace w;
    const std::size_t kb = canon.key_bytes();
    std::vector<std::uint8_t> key_x(kb), key_y(kb), y(n);
    std::vector<Site> defects;
    std::vector<std::int64_t> counts(K + 1);
    std::vector<std::vector<Site>> pools;
    for (std::size_t r = begin; r < end; ++r) {
      Rng rng(seed, r);
      const std::uint8_t* x = states + r * n;
      std::uint8_t* o = out + r * n;
      detail::canonicalize_row(canon, x, w, nullptr, key_x.data(), nullptr, nullptr);
      defects.clear();
      std::fill(counts.begin(), counts.end(), 0);
      for (std::size_t s = 0; s < n; ++s)
        if (x[s]) {
          defects.push_back(static_cast<Site>(s));
          ++counts[x[s]];
        }
      std::int8_t found = -1;
      if (!defects.empty() && n_neighbors > 0 && rng.uniform() < hard_fraction) {
        for (std::size_t t = 0; t < max_tries && found < 0; ++t) {
          const Site d = defects[rng.below(defects.size())];
          const std::int32_t to = neighbors[d * n_neighbors + rng.below(n_neighbors)];
          if (to < 0 || x[to] != 0 || !canon.allowed(static_cast<std::size_t>(to), x[d])) continue;
          std::memcpy(y.data(), x, n);
          y[static_cast<std::size_t>(to)] = x[d];
          y[d] = 0;
          detail::canonicalize_row(canon, y.data(), w, nullptr, key_y.data(), nullptr, nullptr);
          if (key_y != key_x) found = 1;
        }
      }
      for (std::size_t t = 0; t < max_tries && found < 0 && !defects.empty(); ++t) {
        pools = by_type;
        std::memset(y.data(), 0, n);
        std::vector<std::size_t> used(pools.size(), 0);
        for (std::size_t k = 1; k <= K; ++k) {
          if (counts[k] == 0) continue;
          std::size_t kt = 0;
          for (const Site d : defects)
            if (x[d] == k) {
              kt = static_cast<std::size_t>(types[d]);
              break;
            }
          auto& pool = pools[kt];
          std::size_t& u = used[kt];
          for (std::int64_t c = 0; c < counts[k]; ++c, ++u) {
            const std::size_t j = u + static_cast<std::size_t>(rng.below(pool.size() - u));
            std::swap(pool[u], pool[j]);
            y[pool[u]] = static_cast<std::uint8_t>(k);
          }
        }
        detail::canonicalize_row(canon, y.data(), w, nullptr, key_y.data(), nullptr, nullptr);
        if (key_y != key_x) found = 0;
      }
      if (found < 0) std::memcpy(o, x, n);
      else std::memcpy(o, y.data(), n);
      kind_out[r] = found;
    }
  });
}

}  // namespace defectspace
