#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "defectspace/canonical.hpp"

namespace defectspace {
namespace detail {

/// Scratch memory of one thread, reused from placement to placement.
struct Workspace {
  std::vector<Site> sites;                                       ///< defect sites, in input order
  std::vector<std::uint8_t> kinds;                               ///< defect kind of each entry of sites
  std::vector<std::uint32_t> counts;                             ///< [kind] defects of that kind (n_kinds + 1)
  std::vector<std::uint32_t> rank;                               ///< [kind] rank by (count, kind) among present kinds
  std::vector<std::uint32_t> anchors;                            ///< indices into sites of the anchor candidates
  std::vector<std::uint64_t> signatures;                         ///< environment signature of each anchor
  std::vector<std::uint32_t> current;                            ///< image under the candidate being compared
  std::vector<std::uint32_t> best;                               ///< smallest image so far
  std::vector<Site> seg_sites;                                   ///< defect sites grouped by kind rank
  std::vector<std::uint32_t> seg_start;                          ///< start of each rank's group in seg_sites
  std::vector<std::uint32_t> fill;                               ///< fill cursor per rank
  std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;    ///< (anchor, partner) indices into sites
  std::vector<std::uint8_t> seen;                                ///< n_sites flags for extract_sparse
};

/// Fills w with the defects of a dense row (n_sites bytes); false, with *bad_site set when
/// bad_site is not null, on a code its site cannot hold.
bool extract_dense(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::size_t* bad_site);

/// Fills w with count (site, code) pairs; false, with *error set, on a bad or repeated site or code.
bool extract_sparse(const Canonicalizer& c, const std::int32_t* sites, const std::uint8_t* codes, std::size_t count,
                    Workspace& w, std::string* error);

/// Canonical form of the defects held in w. Each output may be null; else canonical: n_sites bytes,
/// key: key_bytes, orbit: the orbit size, op: an element g with g.x == canonical form.
void canonicalize_extracted(const Canonicalizer& c, Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                            std::int64_t* orbit, std::int64_t* op);

/// extract_dense then canonicalize_extracted; false (nothing written) on a code its site cannot hold.
bool canonicalize_row(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::uint8_t* canonical,
                      std::uint8_t* key, std::int64_t* orbit, std::int64_t* op, std::size_t* bad_site = nullptr);

}  // namespace detail
}  // namespace defectspace
