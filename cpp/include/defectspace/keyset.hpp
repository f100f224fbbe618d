#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace defectspace {

/// An exact set of fixed-width keys with a count per key, in first-seen order: the dedupe store.
class KeySet {
 public:
  /// key_bytes: width of every key (> 0).
  explicit KeySet(std::size_t key_bytes);
  /// Inserts n keys (n x key_bytes); index[r] = class index of key r (first-seen order),
  /// is_new[r] = 1 if key r was not in the set before this row. Either output may be null.
  void insert(const std::uint8_t* keys, std::size_t n, std::int64_t* index, std::uint8_t* is_new);
  /// Class index of each key, or -1 if absent.
  void lookup(const std::uint8_t* keys, std::size_t n, std::int64_t* index) const;
  std::size_t size() const { return counts_.size(); }
  std::size_t key_bytes() const { return key_bytes_; }
  /// All keys, size() x key_bytes, in first-seen order.
  const std::vector<std::uint8_t>& keys() const { return keys_; }
  /// Times each key was inserted.
  const std::vector<std::int64_t>& counts() const { return counts_; }

 private:
  std::uint64_t hash(const std::uint8_t* key) const;
  void grow();
  std::size_t key_bytes_;
  std::vector<std::uint8_t> keys_;
  std::vector<std::int64_t> counts_;
  std::vector<std::uint32_t> table_;  // class index + 1, 0 = empty
};

}  // namespace defectspace
