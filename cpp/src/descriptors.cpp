#include "defectspace/descriptors.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "defectspace/parallel.hpp"

namespace defectspace {

void defect_pair_histogram(const std::uint8_t* states, std::size_t n, std::size_t n_sites, std::size_t n_codes,
                           const std::int32_t* shell, std::size_t n_shells, const std::int32_t* feature,
                           const double* damp, std::size_t n_count, std::size_t n_damp, double* out,
                           std::size_t n_threads) {
  if (n_codes < 1 || n_count + 1 < n_codes) throw std::invalid_argument("defect_pair_histogram: bad table sizes");
  const std::size_t n_out = n_count + n_damp;
  for (std::size_t i = 0; i < n_sites * n_sites; ++i)
    if (shell[i] < 0 || static_cast<std::size_t>(shell[i]) >= n_shells)
      throw std::invalid_argument("defect_pair_histogram: shell index out of range");
  // the damping weights are sparse (a shell column feeds the damped sums of its own kind pair only):
  // the nonzero ones per column, in column order; skipping a zero weight skips adding +0.0, which
  // leaves every sum's bits as they were
  std::vector<std::size_t> damp_start(n_count + 1, 0);
  std::vector<std::size_t> damp_index;
  if (damp != nullptr) {
    for (std::size_t f = 0; f < n_count; ++f) {
      damp_start[f] = damp_index.size();
      if (f + 1 < n_codes) continue;  // kind counts are not damped
      for (std::size_t j = 0; j < n_damp; ++j)
        if (damp[f * n_damp + j] != 0.0) damp_index.push_back(j);
    }
    damp_start[n_count] = damp_index.size();
  }
  parallel_for(n, resolve_threads(n_threads, n), [&](std::size_t begin, std::size_t end, std::size_t) {
    std::vector<std::uint32_t> sites;
    std::vector<std::uint8_t> codes;
    sites.reserve(n_sites);
    codes.reserve(n_sites);
    for (std::size_t r = begin; r < end; ++r) {
      const std::uint8_t* row = states + r * n_sites;
      double* o = out + r * n_out;
      sites.clear();
      codes.clear();
      for (std::size_t s = 0; s < n_sites; ++s) {
        const std::uint8_t c = row[s];
        if (c == 0) continue;
        if (c >= n_codes)
          throw std::invalid_argument("defect_pair_histogram: code " + std::to_string(c) + " at site " +
                                      std::to_string(s) + " of row " + std::to_string(r) + " is not a defect kind");
        o[c - 1] += 1.0;
        sites.push_back(static_cast<std::uint32_t>(s));
        codes.push_back(c);
      }
      const std::size_t k = sites.size();
      for (std::size_t i = 0; i < k; ++i) {
        const std::int32_t* shell_row = shell + static_cast<std::size_t>(sites[i]) * n_sites;
        const std::int32_t* feat_row = feature + static_cast<std::size_t>(codes[i]) * n_codes * n_shells;
        for (std::size_t j = i + 1; j < k; ++j) {
          const std::int32_t f = feat_row[codes[j] * n_shells + static_cast<std::size_t>(shell_row[sites[j]])];
          if (f < static_cast<std::int32_t>(n_codes) - 1 || static_cast<std::size_t>(f) >= n_count)
            throw std::invalid_argument("defect_pair_histogram: a defect pair at a distance the lattice cannot realise");
          o[f] += 1.0;
        }
      }
      if (damp == nullptr || k < 2) continue;
      double* d = o + n_count;
      for (std::size_t f = n_codes - 1; f < n_count; ++f) {
        const double c = o[f];
        if (c == 0.0) continue;
        const double* w = damp + f * n_damp;
        for (std::size_t q = damp_start[f]; q < damp_start[f + 1]; ++q) d[damp_index[q]] += c * w[damp_index[q]];
      }
    }
  });
}

}  // namespace defectspace
