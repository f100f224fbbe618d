#include "defectspace/keyset.hpp"

#include <cstring>
#include <stdexcept>
#include <limits>

namespace defectspace {

KeySet::KeySet(std::size_t key_bytes) : key_bytes_(key_bytes), table_(1024, 0) {
  if (key_bytes == 0) throw std::invalid_argument("key width must be positive");
}

std::uint64_t KeySet::hash(const std::uint8_t* key) const {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ key_bytes_;
  std::size_t i = 0;
  for (; i + 8 <= key_bytes_; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, key + i, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, key + i, key_bytes_ - i);
  h = (h ^ tail) * 0x94d049bb133111ebULL;
  return h ^ (h >> 29);
}

void KeySet::grow() {
  std::vector<std::uint32_t> table(table_.size() * 2, 0);
  const std::size_t mask = table.size() - 1;
  for (std::size_t c = 0; c < counts_.size(); ++c) {
    std::size_t slot = hash(keys_.data() + c * key_bytes_) & mask;
    while (table[slot]) slot = (slot + 1) & mask;
    table[slot] = static_cast<std::uint32_t>(c + 1);
  }
  table_.swap(table);
}

void KeySet::insert(const std::uint8_t* keys, std::size_t n, std::int64_t* index, std::uint8_t* is_new) {
  for (std::size_t r = 0; r < n; ++r) {
    if ((counts_.size() + 1) * 2 > table_.size()) grow();
    if (counts_.size() >= std::numeric_limits<std::uint32_t>::max() - 1)
      throw std::length_error("KeySet holds 2^32 - 2 keys, its maximum");
    const std::uint8_t* key = keys + r * key_bytes_;
    const std::size_t mask = table_.size() - 1;
    std::size_t slot = hash(key) & mask;
    std::int64_t found = -1;
    while (table_[slot]) {
      const std::size_t c = table_[slot] - 1;
      if (std::memcmp(keys_.data() + c * key_bytes_, key, key_bytes_) == 0) {
        found = static_cast<std::int64_t>(c);
        break;
      }
      slot = (slot + 1) & mask;
    }
    if (found < 0) {
      found = static_cast<std::int64_t>(counts_.size());
      keys_.insert(keys_.end(), key, key + key_bytes_);
      counts_.push_back(0);
      table_[slot] = static_cast<std::uint32_t>(found + 1);
      if (is_new) is_new[r] = 1;
    } else if (is_new) {
      is_new[r] = 0;
    }
    ++counts_[static_cast<std::size_t>(found)];
    if (index) index[r] = found;
  }
}

void KeySet::lookup(const std::uint8_t* keys, std::size_t n, std::int64_t* index) const {
  const std::size_t mask = table_.size() - 1;
  for (std::size_t r = 0; r < n; ++r) {
    const std::uint8_t* key = keys + r * key_bytes_;
    std::size_t slot = hash(key) & mask;
    index[r] = -1;
    while (table_[slot]) {
      const std::size_t c = table_[slot] - 1;
      if (std::memcmp(keys_.data() + c * key_bytes_, key, key_bytes_) == 0) {
        index[r] = static_cast<std::int64_t>(c);
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
}

}  // namespace defectspace
