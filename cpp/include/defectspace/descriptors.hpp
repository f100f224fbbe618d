#pragma once
#include <cstddef>
#include <cstdint>

namespace defectspace {

/// Invariant descriptor counts of dense placement rows: for every row r, out[r][c - 1] += 1 per
/// defect of code c, and out[r][f] += 1 per unordered pair of defect sites (a, b) with
/// f = feature[(code_a * n_codes + code_b) * n_shells + shell[a * n_sites + b]].
/// Then, with `damp` (n_count x n_damp, row-major), out[r][n_count + j] = sum over count columns
/// f < n_count in increasing order of out[r][f] * damp[f][j]: a fixed order per row, so rows with
/// equal counts get bit-identical sums wherever they sit in the batch.
/// `out` (n x n_out) must be zeroed by the caller. Throws std::invalid_argument for a code
/// >= n_codes, a shell index >= n_shells or a feature outside [n_codes - 1, n_count).
void defect_pair_histogram(const std::uint8_t* states, std::size_t n, std::size_t n_sites, std::size_t n_codes,
                           const std::int32_t* shell, std::size_t n_shells, const std::int32_t* feature,
                           const double* damp, std::size_t n_count, std::size_t n_damp, double* out,
                           std::size_t n_threads);

}  // namespace defectspace
