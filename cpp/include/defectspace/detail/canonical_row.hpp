#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "defectspace/canonical.hpp"

namespace defectspace {
namespace detail {

/// Scratch memory of one thread, reused from placement to placement.
struct Workspace {
  std::size_t nd = 0;                             ///< number of defects held
  std::size_t sized_for = 0;                      ///< n_sites the buffers below are sized for
  bool direct = false;                            ///< defects go straight into by_kind (kind k at k * n_sites)
  std::vector<Site> sites;                        ///< defect sites (first nd) when not direct
  std::vector<std::uint8_t> kinds;                ///< kind of each defect in sites when not direct
  std::vector<std::uint32_t> counts;              ///< [kind] defects of that kind (n_kinds + 1)
  std::vector<std::uint8_t> kind_of_rank;         ///< [rank] the kind of that rank
  std::vector<std::uint32_t> kind_start;          ///< [kind] start of its defects in by_kind (n_kinds + 2)
  std::vector<Site> by_kind;                      ///< defect sites grouped by kind, in input order within a kind
  std::vector<Site> anchors;                      ///< sites of the anchor candidates
  std::vector<std::uint64_t> signatures;          ///< environment signature of each anchor
  std::vector<std::pair<Site, Site>> pairs;       ///< (anchor, partner) sites that candidates must map to (m*, t*)
  std::vector<std::uint64_t> current_bits;        ///< image under the candidate: one bitset of sites per kind rank
  std::vector<std::uint64_t> best_bits;           ///< smallest image so far, as current_bits
  std::vector<std::uint32_t> current;             ///< image under the candidate: sorted sites per kind rank
  std::vector<std::uint32_t> best;                ///< smallest image so far, as current
  std::vector<std::uint8_t> seen;                 ///< n_sites flags for extract_sparse
};

/// Tables of a Canonicalizer shared by all threads.
struct RowTables {
  std::size_t n_pair_classes = 0;              ///< pair classes: orbit representatives x n_sites
  std::vector<std::uint64_t> signature_terms;  ///< [kind * n_pair_classes + pair class] term of the environment signature; empty when too large
  std::vector<Site> pair_class_rows;           ///< [s * n_sites + t] = pair_class(s, t) - pair_classes_from(s).base; empty when too large
};

/// The tables of a canonicalizer with this group and n_kinds defect kinds.
std::shared_ptr<const RowTables> make_row_tables(const SymmetryGroup& group, std::size_t n_kinds);

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
