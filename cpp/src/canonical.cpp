#include "defectspace/canonical.hpp"

#include "defectspace/detail/canonical_row.hpp"
#include "defectspace/parallel.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace defectspace {
namespace {

std::string bad_code_message(std::size_t row, std::size_t site, unsigned code, const Canonicalizer& c) {
  std::string msg = "row " + std::to_string(row) + ": site " + std::to_string(site) + " cannot hold defect code " +
                    std::to_string(code);
  if (code > c.n_kinds()) msg += " (codes are 0.." + std::to_string(c.n_kinds()) + ")";
  else msg += " (that defect kind belongs to another sublattice)";
  return msg;
}

}  // namespace

Canonicalizer::Canonicalizer(std::shared_ptr<const SymmetryGroup> group, const std::int32_t* kind_site_type,
                             std::size_t n_kinds)
    : group_(std::move(group)), kind_site_type_(kind_site_type, kind_site_type + n_kinds) {
  if (!group_) throw std::invalid_argument("no symmetry group given");
  if (n_kinds > 255) throw std::invalid_argument("at most 255 defect kinds are supported, got " + std::to_string(n_kinds));
  const auto& types = group_->site_types();
  std::int32_t max_type = 0;
  for (auto t : types) {
    if (t < 0 || t > 255) throw std::invalid_argument("site type ids must lie in 0..255, got " + std::to_string(t));
    max_type = std::max(max_type, t);
  }
  local_code_.assign(n_kinds + 1, 0);
  global_code_.assign(static_cast<std::size_t>(max_type + 1) * 256, 0);
  std::vector<std::uint32_t> per_type(static_cast<std::size_t>(max_type + 1), 0);
  std::size_t max_local = 0;
  for (std::size_t k = 0; k < n_kinds; ++k) {
    const std::int32_t t = kind_site_type_[k];
    if (t < 0 || t > max_type)
      throw std::invalid_argument("defect kind " + std::to_string(k + 1) + " names site type " + std::to_string(t) +
                                  ", which no site has");
    const std::uint32_t local = ++per_type[static_cast<std::size_t>(t)];
    local_code_[k + 1] = static_cast<std::uint8_t>(local);
    global_code_[static_cast<std::size_t>(t) * 256 + local] = static_cast<std::uint8_t>(k + 1);
    max_local = std::max<std::size_t>(max_local, local);
  }
  bits_per_site_ = 1;
  while ((std::size_t{1} << bits_per_site_) <= max_local) ++bits_per_site_;
  key_bytes_ = (group_->n_sites() * bits_per_site_ + 7) / 8;
  const std::size_t stride = n_kinds + 1;
  allowed_table_.assign(group_->n_sites() * stride, 0);
  for (std::size_t s = 0; s < group_->n_sites(); ++s) {
    allowed_table_[s * stride] = 1;
    for (std::size_t k = 1; k <= n_kinds; ++k) allowed_table_[s * stride + k] = kind_site_type_[k - 1] == types[s];
  }
  row_tables_ = detail::make_row_tables(*group_, n_kinds);
}

void Canonicalizer::pack_key(const std::uint8_t* canonical, std::uint8_t* key) const {
  std::memset(key, 0, key_bytes_);
  const std::size_t n = n_sites();
  for (std::size_t s = 0; s < n; ++s) {
    const std::uint8_t c = canonical[s];
    if (c == 0) continue;
    const std::size_t code = local_code_[c];
    const std::size_t bit = s * bits_per_site_;
    for (std::size_t b = 0; b < bits_per_site_; ++b)
      if (code >> b & 1U) key[(bit + b) >> 3] = static_cast<std::uint8_t>(key[(bit + b) >> 3] | (1U << ((bit + b) & 7U)));
  }
}

void Canonicalizer::unpack_keys(const std::uint8_t* keys, std::size_t n_rows, std::uint8_t* states) const {
  const std::size_t n = n_sites();
  const auto& types = group_->site_types();
  for (std::size_t r = 0; r < n_rows; ++r) {
    const std::uint8_t* key = keys + r * key_bytes_;
    std::uint8_t* out = states + r * n;
    for (std::size_t s = 0; s < n; ++s) {
      std::size_t code = 0;
      const std::size_t bit = s * bits_per_site_;
      for (std::size_t b = 0; b < bits_per_site_; ++b) code |= static_cast<std::size_t>(key[(bit + b) >> 3] >> ((bit + b) & 7U) & 1U) << b;
      if (code == 0) {
        out[s] = 0;
        continue;
      }
      const std::uint8_t g = code < 256 ? global_code_[static_cast<std::size_t>(types[s]) * 256 + code] : 0;
      if (g == 0) throw std::invalid_argument("key " + std::to_string(r) + ": site " + std::to_string(s) + " holds code " +
                                              std::to_string(code) + ", which its sublattice does not have");
      out[s] = g;
    }
    for (std::size_t bit = n * bits_per_site_; bit < key_bytes_ * 8; ++bit)
      if (key[bit >> 3] >> (bit & 7U) & 1U) throw std::invalid_argument("key " + std::to_string(r) + " has padding bits set");
  }
}

void Canonicalizer::validate(const std::uint8_t* states, std::size_t n_rows) const {
  const std::size_t n = n_sites();
  const std::size_t stride = n_kinds() + 1;
  for (std::size_t r = 0; r < n_rows; ++r)
    for (std::size_t s = 0; s < n; ++s) {
      const std::uint8_t c = states[r * n + s];
      if (c >= stride || !allowed_table_[s * stride + c]) throw std::invalid_argument(bad_code_message(r, s, c, *this));
    }
}

void Canonicalizer::apply(const std::uint8_t* states, const std::int64_t* ops, std::size_t n_rows, std::uint8_t* out) const {
  const std::size_t n = n_sites();
  for (std::size_t r = 0; r < n_rows; ++r) {
    const std::int64_t g = ops[r];
    if (g < 0 || static_cast<std::size_t>(g) >= group_->order())
      throw std::invalid_argument("row " + std::to_string(r) + ": operation " + std::to_string(g) + " outside 0.." +
                                  std::to_string(group_->order() - 1));
    const auto p = group_->element(static_cast<std::size_t>(g));
    const std::uint8_t* x = states + r * n;
    std::uint8_t* y = out + r * n;
    for (std::size_t s = 0; s < n; ++s) y[p[s]] = x[s];
  }
}

void Canonicalizer::canonicalize(const std::uint8_t* states, std::size_t n_rows, std::uint8_t* canonical,
                                 std::uint8_t* keys, std::int64_t* orbit, std::int64_t* op, std::size_t n_threads) const {
  const std::size_t n = n_sites();
  const std::size_t threads = resolve_threads(n_threads, n_rows);
  std::vector<std::size_t> bad_row(threads, std::numeric_limits<std::size_t>::max());
  std::vector<std::size_t> bad_site(threads, 0);
  parallel_for(n_rows, threads, [&](std::size_t begin, std::size_t end, std::size_t t) {
    detail::Workspace w;
    for (std::size_t r = begin; r < end; ++r) {
      std::size_t site = 0;
      const bool ok = detail::canonicalize_row(*this, states + r * n, w, canonical ? canonical + r * n : nullptr,
                                       keys ? keys + r * key_bytes_ : nullptr, orbit ? orbit + r : nullptr,
                                       op ? op + r : nullptr, &site);
      if (!ok) {
        bad_row[t] = r;
        bad_site[t] = site;
        return;
      }
    }
  });
  for (std::size_t t = 0; t < threads; ++t)
    if (bad_row[t] != std::numeric_limits<std::size_t>::max())
      throw std::invalid_argument(bad_code_message(bad_row[t], bad_site[t], states[bad_row[t] * n + bad_site[t]], *this));
}

void Canonicalizer::canonicalize_sparse(const std::int32_t* sites, const std::uint8_t* codes, const std::int64_t* offsets,
                                        std::size_t n_rows, std::uint8_t* keys, std::int64_t* orbit, std::int64_t* op,
                                        std::size_t n_threads) const {
  for (std::size_t r = 0; r < n_rows; ++r)
    if (offsets[r] < 0 || offsets[r + 1] < offsets[r])
      throw std::invalid_argument("offsets must start at 0 and not decrease; row " + std::to_string(r) + " spans " +
                                  std::to_string(offsets[r]) + ".." + std::to_string(offsets[r + 1]));
  const std::size_t threads = resolve_threads(n_threads, n_rows);
  std::vector<std::size_t> bad_row(threads, std::numeric_limits<std::size_t>::max());
  std::vector<std::string> why(threads);
  parallel_for(n_rows, threads, [&](std::size_t begin, std::size_t end, std::size_t t) {
    detail::Workspace w;
    for (std::size_t r = begin; r < end; ++r) {
      const auto b = static_cast<std::size_t>(offsets[r]);
      const auto count = static_cast<std::size_t>(offsets[r + 1]) - b;
      if (!detail::extract_sparse(*this, sites + b, codes + b, count, w, &why[t])) {
        bad_row[t] = r;
        return;
      }
      detail::canonicalize_extracted(*this, w, nullptr, keys ? keys + r * key_bytes_ : nullptr, orbit ? orbit + r : nullptr,
                             op ? op + r : nullptr);
    }
  });
  for (std::size_t t = 0; t < threads; ++t)
    if (bad_row[t] != std::numeric_limits<std::size_t>::max())
      throw std::invalid_argument("row " + std::to_string(bad_row[t]) + ": " + why[t]);
}

}  // namespace defectspace
