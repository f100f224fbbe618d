#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "defectspace/canonical.hpp"

namespace defectspace {
namespace detail {

/// Sites of each host type in increasing order: result[t] lists the sites whose type id is t.
inline std::vector<std::vector<Site>> sites_by_type(const SymmetryGroup& group) {
  const auto& types = group.site_types();
  std::int32_t max_type = 0;
  for (auto t : types) max_type = t > max_type ? t : max_type;
  std::vector<std::vector<Site>> by_type(static_cast<std::size_t>(max_type) + 1);
  for (std::size_t s = 0; s < types.size(); ++s) by_type[static_cast<std::size_t>(types[s])].push_back(static_cast<Site>(s));
  return by_type;
}

/// Host type id of the sites defect kind `kind` (1..n_kinds) may sit on; throws if it fits no site.
inline std::size_t type_of_kind(const Canonicalizer& canon, std::uint8_t kind) {
  for (std::size_t s = 0; s < canon.n_sites(); ++s)
    if (canon.allowed(s, kind)) return static_cast<std::size_t>(canon.group().site_types()[s]);
  throw std::invalid_argument("defect kind " + std::to_string(kind) + " fits no site");
}

}  // namespace detail
}  // namespace defectspace
