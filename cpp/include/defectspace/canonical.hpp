#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "defectspace/group.hpp"

namespace defectspace {

/// Version of the key layout written by Canonicalizer::canonicalize; bump on any change.
constexpr int kKeyFormatVersion = 1;

/// Exact canonical forms of defect placements under a SymmetryGroup.
/// A placement is a dense row of n_sites bytes: 0 = host atom, k in 1..n_kinds = defect kind k,
/// allowed only on sites whose host type equals kind_site_type[k-1].
class Canonicalizer {
 public:
  /// Scratch memory of one thread.
  struct Workspace {
    std::vector<Site> sites;
    std::vector<std::uint8_t> kinds;
    std::vector<std::uint32_t> counts;
    std::vector<std::uint32_t> rank;
    std::vector<std::uint32_t> anchors;
    std::vector<std::uint64_t> signatures;
    std::vector<std::uint32_t> current;
    std::vector<std::uint32_t> best;
    std::vector<Site> seg_sites;
    std::vector<std::uint32_t> seg_start;
    std::vector<std::uint32_t> fill;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;
    std::vector<std::uint8_t> seen;
  };

  /// kind_site_type: n_kinds host-type ids, one per defect kind (kind k is code k).
  Canonicalizer(std::shared_ptr<const SymmetryGroup> group, const std::int32_t* kind_site_type, std::size_t n_kinds);

  std::size_t n_sites() const { return group_->n_sites(); }
  std::size_t n_kinds() const { return kind_site_type_.size(); }
  /// Bits used per site in a key (enough for the largest per-site code).
  std::size_t bits_per_site() const { return bits_per_site_; }
  /// Bytes in one key.
  std::size_t key_bytes() const { return key_bytes_; }
  const SymmetryGroup& group() const { return *group_; }
  /// Whether code (0..n_kinds) may sit on site s.
  bool allowed(std::size_t s, std::uint8_t code) const {
    return code == 0 || (code <= n_kinds() && kind_site_type_[code - 1U] == group_->site_types()[s]);
  }

  /// Canonicalizes n_rows placements (n_rows x n_sites bytes) on n_threads threads (0 = all cores).
  /// Each output may be null; else canonical: n_rows x n_sites, keys: n_rows x key_bytes,
  /// orbit: n_rows, op: n_rows (element g with g.x == canonical form).
  /// Throws std::invalid_argument naming the first bad row, site and code.
  void canonicalize(const std::uint8_t* states, std::size_t n_rows, std::uint8_t* canonical, std::uint8_t* keys,
                    std::int64_t* orbit, std::int64_t* op, std::size_t n_threads) const;

  /// One placement; returns false (and writes nothing) if a code is not allowed at its site.
  bool canonicalize_row(const std::uint8_t* x, Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                        std::int64_t* orbit, std::int64_t* op, std::size_t* bad_site = nullptr) const;

  /// Canonicalizes placements given sparsely: row r holds the defects sites[offsets[r]..offsets[r+1])
  /// with codes codes[...] (offsets has n_rows + 1 entries, offsets[0] == 0). Outputs as for
  /// canonicalize (no dense canonical form); the cost does not grow with the supercell.
  void canonicalize_sparse(const std::int32_t* sites, const std::uint8_t* codes, const std::int64_t* offsets,
                           std::size_t n_rows, std::uint8_t* keys, std::int64_t* orbit, std::int64_t* op,
                           std::size_t n_threads) const;

  /// Fills w with the defects of a dense row; false (bad_site set) on a code its site cannot hold.
  bool extract_dense(const std::uint8_t* x, Workspace& w, std::size_t* bad_site) const;
  /// Fills w with count (site, code) pairs; false with a message on a bad or repeated site.
  bool extract_sparse(const std::int32_t* sites, const std::uint8_t* codes, std::size_t count, Workspace& w,
                      std::string* error) const;
  /// Canonical form of the defects held in w (outputs as for canonicalize_row).
  void canonicalize_extracted(Workspace& w, std::uint8_t* canonical, std::uint8_t* key, std::int64_t* orbit,
                              std::int64_t* op) const;

  /// Writes the key of an already canonical row.
  void pack_key(const std::uint8_t* canonical, std::uint8_t* key) const;
  /// Inverse of pack_key: n_rows keys to n_rows x n_sites placements; throws on invalid keys.
  void unpack_keys(const std::uint8_t* keys, std::size_t n_rows, std::uint8_t* states) const;
  /// out[r] = ops[r] applied to row r (n_rows x n_sites); throws on an element index out of range.
  void apply(const std::uint8_t* states, const std::int64_t* ops, std::size_t n_rows, std::uint8_t* out) const;
  /// Throws std::invalid_argument naming the first bad row, site and code.
  void validate(const std::uint8_t* states, std::size_t n_rows) const;

 private:
  void reset_counts(Workspace& w) const;
  std::shared_ptr<const SymmetryGroup> group_;
  std::vector<std::int32_t> kind_site_type_;
  std::vector<std::uint8_t> local_code_;       // [kind] -> 1.. within its site type; [0] = 0
  std::vector<std::uint8_t> global_code_;      // [type * 256 + local] -> kind
  std::vector<std::uint8_t> allowed_table_;    // [site * (n_kinds+1) + code]
  std::size_t bits_per_site_ = 1;
  std::size_t key_bytes_ = 0;
};

/// Runs fn(begin, end, thread_index) over [0, n) split into contiguous blocks on n_threads threads.
template <class Fn>
void parallel_for(std::size_t n, std::size_t n_threads, Fn&& fn);

/// Number of threads to use for n items when asked for n_threads (0 = hardware concurrency).
std::size_t resolve_threads(std::size_t n_threads, std::size_t n_items, std::size_t min_per_thread = 256);

}  // namespace defectspace

#include "defectspace/parallel.hpp"
