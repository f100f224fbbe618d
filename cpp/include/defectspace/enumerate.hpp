#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "defectspace/canonical.hpp"

namespace defectspace {

/// Symmetry-distinct placements of one defect multiset, each in canonical form.
struct Enumeration {
  std::vector<std::uint8_t> states;  ///< n_classes x n_sites canonical placements
  std::vector<std::int64_t> orbit;   ///< n_classes orbit sizes (placements per class)
};

/// All distinct placements with counts[k] defects of kind k (counts has n_kinds + 1 entries,
/// counts[0] ignored). Fixes one defect of the anchor kind on each orbit representative and keeps
/// the placements that are their own canonical form, so each class comes out exactly once.
Enumeration enumerate_distinct(const Canonicalizer& canon, const std::int64_t* counts, std::size_t n_threads);

/// n_rows placements drawn uniformly from all placements with these counts, row r from stream r
/// of seed. out: n_rows x n_sites.
void sample_uniform(const Canonicalizer& canon, const std::int64_t* counts, std::size_t n_rows, std::uint64_t seed,
                    std::uint8_t* out, std::size_t n_threads);

/// Positive pairs: images[r] = g_r . states[r] with g_r uniform in the group (ops[r] = g_r).
void random_images(const Canonicalizer& canon, const std::uint8_t* states, std::size_t n_rows, std::uint64_t seed,
                   std::uint8_t* images, std::int64_t* ops, std::size_t n_threads);

/// Negative pairs: for each row a placement of the same composition that is verified
/// inequivalent. With probability hard_fraction one defect is first moved to one of its
/// neighbours (neighbors: n_sites x n_neighbors, -1 padded), keeping it only if inequivalent;
/// otherwise (or if that fails max_tries times) a uniform random placement is drawn.
/// kind_out[r]: 1 hard, 0 random, -1 none found (the row has a single class; out[r] = states[r]).
void negatives(const Canonicalizer& canon, const std::uint8_t* states, std::size_t n_rows, const std::int32_t* neighbors,
               std::size_t n_neighbors, double hard_fraction, std::size_t max_tries, std::uint64_t seed,
               std::uint8_t* out, std::int8_t* kind_out, std::size_t n_threads);

}  // namespace defectspace
