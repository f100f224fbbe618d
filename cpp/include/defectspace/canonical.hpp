#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "defectspace/group.hpp"

namespace defectspace {
namespace detail {
struct RowTables;
}  // namespace detail

/// Version of the key layout written by Canonicalizer::canonicalize; bump on any change.
constexpr int kKeyFormatVersion = 1;

/// Exact canonical forms of defect placements under a SymmetryGroup.
/// A placement is a dense row of n_sites bytes: 0 = host atom, k in 1..n_kinds = defect kind k,
/// allowed only on sites whose host type equals kind_site_type[k-1].
class Canonicalizer {
 public:
  /// kind_site_type: n_kinds host-type ids, one per defect kind (kind k is code k).
  Canonicalizer(std::shared_ptr<const SymmetryGroup> group, const std::int32_t* kind_site_type, std::size_t n_kinds);

  /// Sites per placement row.
  std::size_t n_sites() const { return group_->n_sites(); }
  /// Defect kinds (codes 1..n_kinds).
  std::size_t n_kinds() const { return kind_site_type_.size(); }
  /// Bits used per site in a key (enough for the largest per-site code).
  std::size_t bits_per_site() const { return bits_per_site_; }
  /// Bytes in one key.
  std::size_t key_bytes() const { return key_bytes_; }
  /// The group placements are canonicalized under.
  const SymmetryGroup& group() const { return *group_; }
  /// Whether code may sit on site s (0 always may; codes above n_kinds never).
  bool allowed(std::size_t s, std::uint8_t code) const {
    const std::size_t stride = n_kinds() + 1;
    return code < stride && allowed_table_[s * stride + code] != 0;
  }
  /// Precomputed tables of the row algorithm (detail/canonical_row.hpp), shared by all threads.
  const detail::RowTables& row_tables() const { return *row_tables_; }
  /// Code of defect kind `kind` (0..n_kinds) among its site type's kinds (1..), as packed into keys; 0 for the host.
  std::uint8_t local_code(std::uint8_t kind) const { return local_code_[kind]; }

  /// Canonicalizes n_rows placements (n_rows x n_sites bytes) on n_threads threads (0 = all cores).
  /// Each output may be null; else canonical: n_rows x n_sites, keys: n_rows x key_bytes,
  /// orbit: n_rows, op: n_rows (element g with g.x == canonical form).
  /// Throws std::invalid_argument naming the first bad row, site and code.
  void canonicalize(const std::uint8_t* states, std::size_t n_rows, std::uint8_t* canonical, std::uint8_t* keys,
                    std::int64_t* orbit, std::int64_t* op, std::size_t n_threads) const;

  /// Canonicalizes placements given sparsely: row r holds the defects sites[offsets[r]..offsets[r+1])
  /// with codes codes[...] (offsets has n_rows + 1 entries, offsets[0] == 0). Outputs as for
  /// canonicalize (no dense canonical form); the cost does not grow with the supercell.
  void canonicalize_sparse(const std::int32_t* sites, const std::uint8_t* codes, const std::int64_t* offsets,
                           std::size_t n_rows, std::uint8_t* keys, std::int64_t* orbit, std::int64_t* op,
                           std::size_t n_threads) const;

  /// Writes the key of an already canonical row.
  void pack_key(const std::uint8_t* canonical, std::uint8_t* key) const;
  /// Inverse of pack_key: n_rows keys to n_rows x n_sites placements; throws on invalid keys.
  void unpack_keys(const std::uint8_t* keys, std::size_t n_rows, std::uint8_t* states) const;
  /// out[r] = ops[r] applied to row r (n_rows x n_sites); throws on an element index out of range.
  void apply(const std::uint8_t* states, const std::int64_t* ops, std::size_t n_rows, std::uint8_t* out) const;
  /// Throws std::invalid_argument naming the first bad row, site and code.
  void validate(const std::uint8_t* states, std::size_t n_rows) const;

 private:
  std::shared_ptr<const SymmetryGroup> group_;
  std::vector<std::int32_t> kind_site_type_;
  std::vector<std::uint8_t> local_code_;       // [kind] -> 1.. within its site type; [0] = 0
  std::vector<std::uint8_t> global_code_;      // [type * 256 + local] -> kind
  std::vector<std::uint8_t> allowed_table_;    // [site * (n_kinds+1) + code]
  std::size_t bits_per_site_ = 1;
  std::size_t key_bytes_ = 0;
  std::shared_ptr<const detail::RowTables> row_tables_;
};

}  // namespace defectspace

