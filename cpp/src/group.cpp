#include "defectspace/group.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace defectspace {
namespace {

std::int32_t mod(std::int64_t a, std::int32_t n) {
  auto r = static_cast<std::int32_t>(a % n);
  return r < 0 ? r + n : r;
}

std::string op_name(std::size_t k) { return "point operation " + std::to_string(k); }

}  // namespace

std::uint64_t SymmetryGroup::hash_perm(const Site* images) const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t s = 0; s < n_sites_; ++s) {
    h ^= images[s];
    h *= 0x100000001b3ULL;
  }
  return h ^ (h >> 29);
}

std::int64_t SymmetryGroup::find(const Site* images) const {
  const std::size_t mask = table_.size() - 1;
  for (std::size_t slot = hash_perm(images) & mask;; slot = (slot + 1) & mask) {
    const std::uint32_t entry = table_[slot];
    if (entry == 0) return -1;
    const Site* candidate = perm(entry - 1);
    if (std::equal(images, images + n_sites_, candidate)) return static_cast<std::int64_t>(entry - 1);
  }
}

std::size_t SymmetryGroup::compose(std::size_t a, std::size_t b) const {
  if (a >= order_ || b >= order_) throw std::invalid_argument("compose: element index out of range");
  std::vector<Site> images(n_sites_);
  const Site* pa = perm(a);
  const Site* pb = perm(b);
  for (std::size_t s = 0; s < n_sites_; ++s) images[s] = pa[pb[s]];
  const std::int64_t c = find(images.data());
  if (c < 0) throw std::logic_error("compose: product not in group");
  return static_cast<std::size_t>(c);
}

void SymmetryGroup::finalize() {
  // Hash table of all elements, rejecting duplicates.
  std::size_t cap = 16;
  while (cap < 2 * order_) cap <<= 1;
  table_.assign(cap, 0);
  const std::size_t mask = cap - 1;
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perm(g);
    std::size_t slot = hash_perm(p) & mask;
    while (table_[slot] != 0) {
      if (std::equal(p, p + n_sites_, perm(table_[slot] - 1))) {
        throw std::invalid_argument("symmetry operations " + std::to_string(table_[slot] - 1) + " and " +
                                    std::to_string(g) + " are the same site permutation");
      }
      slot = (slot + 1) & mask;
    }
    table_[slot] = static_cast<std::uint32_t>(g + 1);
  }
  // Identity.
  std::vector<Site> images(n_sites_);
  for (std::size_t s = 0; s < n_sites_; ++s) images[s] = static_cast<Site>(s);
  const std::int64_t id = find(images.data());
  if (id < 0) throw std::invalid_argument("the operations do not contain the identity");
  identity_ = static_cast<std::size_t>(id);
  // Inverses.
  inverse_.assign(order_, 0);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perm(g);
    for (std::size_t s = 0; s < n_sites_; ++s) images[p[s]] = static_cast<Site>(s);
    const std::int64_t inv = find(images.data());
    if (inv < 0) throw std::invalid_argument("the inverse of operation " + std::to_string(g) + " is missing: not a group");
    inverse_[g] = static_cast<std::uint32_t>(inv);
  }
  // Orbit representatives and cosets mapping each site to its representative.
  orbit_rep_.assign(n_sites_, std::numeric_limits<Site>::max());
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perm(g);
    for (std::size_t s = 0; s < n_sites_; ++s) orbit_rep_[s] = std::min(orbit_rep_[s], p[s]);
  }
  coset_offset_.assign(n_sites_ + 1, 0);
  std::vector<std::uint32_t> counts(n_sites_, 0);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perm(g);
    for (std::size_t s = 0; s < n_sites_; ++s)
      if (p[s] == orbit_rep_[s]) ++counts[s];
  }
  for (std::size_t s = 0; s < n_sites_; ++s) coset_offset_[s + 1] = coset_offset_[s] + counts[s];
  coset_.assign(coset_offset_[n_sites_], 0);
  std::vector<std::uint32_t> fill(coset_offset_.begin(), coset_offset_.end() - 1);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perm(g);
    for (std::size_t s = 0; s < n_sites_; ++s)
      if (p[s] == orbit_rep_[s]) coset_[fill[s]++] = static_cast<std::uint32_t>(g);
  }
  // Stabilizer minima for pair classes.
  rep_index_.assign(n_sites_, -1);
  std::int32_t n_reps = 0;
  for (std::size_t s = 0; s < n_sites_; ++s)
    if (orbit_rep_[s] == s) rep_index_[s] = n_reps++;
  stab_min_.assign(static_cast<std::size_t>(n_reps) * n_sites_, std::numeric_limits<Site>::max());
  for (std::size_t r = 0; r < n_sites_; ++r) {
    if (rep_index_[r] < 0) continue;
    Site* row = stab_min_.data() + static_cast<std::size_t>(rep_index_[r]) * n_sites_;
    for (const std::uint32_t* h = coset_begin(r); h != coset_end(r); ++h) {
      const Site* p = perm(*h);
      for (std::size_t t = 0; t < n_sites_; ++t) row[t] = std::min(row[t], p[t]);
    }
  }
}

SymmetryGroup SymmetryGroup::from_point_operations(const std::int32_t* rotations, const std::int32_t* basis_map,
                                                   const std::int32_t* shifts, std::size_t n_ops,
                                                   std::size_t n_basis, const std::int32_t* site_types,
                                                   std::int32_t n1, std::int32_t n2) {
  if (n_ops == 0) throw std::invalid_argument("no point operations given");
  if (n_basis == 0) throw std::invalid_argument("the unit cell has no basis sites");
  if (n1 < 1 || n2 < 1)
    throw std::invalid_argument("supercell must be at least 1x1, got " + std::to_string(n1) + "x" + std::to_string(n2));
  const std::size_t n_cells = static_cast<std::size_t>(n1) * static_cast<std::size_t>(n2);
  const std::size_t n_sites = n_basis * n_cells;
  if (n_sites > std::numeric_limits<Site>::max())
    throw std::invalid_argument("supercell has " + std::to_string(n_sites) + " sites; at most 65535 are supported");
  const std::size_t order = n_ops * n_cells;
  if (order > std::numeric_limits<std::uint32_t>::max() / 2) throw std::invalid_argument("group too large");

  SymmetryGroup G;
  G.n_sites_ = n_sites;
  G.order_ = order;
  G.site_types_.resize(n_sites);
  for (std::size_t c = 0; c < n_cells; ++c)
    for (std::size_t L = 0; L < n_basis; ++L) G.site_types_[c * n_basis + L] = site_types[L];

  // Point operations as site permutations.
  std::vector<Site> point(n_ops * n_sites);
  for (std::size_t k = 0; k < n_ops; ++k) {
    const std::int32_t* R = rotations + 4 * k;
    const std::int64_t det = static_cast<std::int64_t>(R[0]) * R[3] - static_cast<std::int64_t>(R[1]) * R[2];
    if (det != 1 && det != -1) throw std::invalid_argument(op_name(k) + " has determinant " + std::to_string(det) + ", not +-1");
    if ((static_cast<std::int64_t>(R[2]) * n1) % n2 != 0 || (static_cast<std::int64_t>(R[1]) * n2) % n1 != 0)
      throw std::invalid_argument(op_name(k) + " does not map the " + std::to_string(n1) + "x" + std::to_string(n2) +
                                  " supercell onto itself");
    for (std::size_t L = 0; L < n_basis; ++L) {
      const std::int32_t Lp = basis_map[k * n_basis + L];
      if (Lp < 0 || static_cast<std::size_t>(Lp) >= n_basis)
        throw std::invalid_argument(op_name(k) + " maps basis site " + std::to_string(L) + " to " + std::to_string(Lp) +
                                    ", outside 0.." + std::to_string(n_basis - 1));
      if (site_types[Lp] != site_types[L])
        throw std::invalid_argument(op_name(k) + " maps basis site " + std::to_string(L) + " onto basis site " +
                                    std::to_string(Lp) + " of another species");
    }
    for (std::int32_t i = 0; i < n1; ++i)
      for (std::int32_t j = 0; j < n2; ++j)
        for (std::size_t L = 0; L < n_basis; ++L) {
          const std::int32_t* sh = shifts + 2 * (k * n_basis + L);
          const std::int32_t ip = mod(static_cast<std::int64_t>(R[0]) * i + static_cast<std::int64_t>(R[1]) * j + sh[0], n1);
          const std::int32_t jp = mod(static_cast<std::int64_t>(R[2]) * i + static_cast<std::int64_t>(R[3]) * j + sh[1], n2);
          const std::size_t src = n_basis * (static_cast<std::size_t>(i) * static_cast<std::size_t>(n2) + static_cast<std::size_t>(j)) + L;
          const std::size_t dst = n_basis * (static_cast<std::size_t>(ip) * static_cast<std::size_t>(n2) + static_cast<std::size_t>(jp)) +
                                  static_cast<std::size_t>(basis_map[k * n_basis + L]);
          point[k * n_sites + src] = static_cast<Site>(dst);
        }
  }
  auto translate = [&](std::size_t s, std::int32_t a, std::int32_t b) -> Site {
    const std::size_t L = s % n_basis;
    const std::size_t cell = s / n_basis;
    const auto i = static_cast<std::int32_t>(cell / static_cast<std::size_t>(n2));
    const auto j = static_cast<std::int32_t>(cell % static_cast<std::size_t>(n2));
    const std::int32_t ip = mod(static_cast<std::int64_t>(i) + a, n1);
    const std::int32_t jp = mod(static_cast<std::int64_t>(j) + b, n2);
    return static_cast<Site>(n_basis * (static_cast<std::size_t>(ip) * static_cast<std::size_t>(n2) + static_cast<std::size_t>(jp)) + L);
  };
  // Element (k, a, b) = T(a, b) . P_k. On tiny supercells (1x1, ...) different operations can
  // move the sites alike; the group acting on sites keeps one element per distinct permutation.
  G.perms_.reserve(order * n_sites);
  std::unordered_set<std::string> seen;
  std::vector<Site> row(n_sites);
  for (std::size_t k = 0; k < n_ops; ++k)
    for (std::int32_t a = 0; a < n1; ++a)
      for (std::int32_t b = 0; b < n2; ++b) {
        for (std::size_t s = 0; s < n_sites; ++s) row[s] = translate(point[k * n_sites + s], a, b);
        if (!seen.emplace(reinterpret_cast<const char*>(row.data()), n_sites * sizeof(Site)).second) continue;
        G.perms_.insert(G.perms_.end(), row.begin(), row.end());
        G.elem_k_.push_back(static_cast<std::uint32_t>(k));
        G.elem_a_.push_back(static_cast<std::uint32_t>(a));
        G.elem_b_.push_back(static_cast<std::uint32_t>(b));
      }
  G.order_ = G.elem_k_.size();
  G.finalize();
  // Translation views pay off once the permutation table outgrows the per-core cache.
  constexpr std::size_t kTableBytesForViews = std::size_t{1} << 20;
  G.n1_ = static_cast<std::uint32_t>(n1);
  G.n2_ = static_cast<std::uint32_t>(n2);
  G.n_basis_ = static_cast<std::uint32_t>(n_basis);
  G.translation_views_ = G.perms_.size() * sizeof(Site) > kTableBytesForViews && n_ops <= 65535 && n1 <= 65535 && n2 <= 65535;
  if (G.translation_views_) {
    G.point_rows_ = point;
    G.site_i_.resize(n_sites);
    G.site_j_.resize(n_sites);
    G.site_l_.resize(n_sites);
    for (std::size_t s = 0; s < n_sites; ++s) {
      const std::size_t cell = s / n_basis;
      G.site_i_[s] = static_cast<std::uint16_t>(cell / static_cast<std::size_t>(n2));
      G.site_j_[s] = static_cast<std::uint16_t>(cell % static_cast<std::size_t>(n2));
      G.site_l_[s] = static_cast<std::uint16_t>(s % n_basis);
    }
    for (std::size_t g = 0; g < G.order_; ++g) {  // the views must equal the table (distinct elements only)
      const auto view = G.element(g);
      const Site* table_row = G.perm(g);
      for (std::size_t s = 0; s < n_sites; ++s)
        if (view[s] != table_row[s]) throw std::logic_error("translation view disagrees with the permutation table");
    }
  }
  // Closure: S contains the identity, is generated by {T(1,0), T(0,1), P_k} by construction, and
  // S.t in S for every generator t implies S is closed.
  std::vector<Site> images(n_sites);
  std::vector<std::vector<Site>> generators;
  for (std::size_t k = 0; k < n_ops; ++k) generators.emplace_back(point.begin() + static_cast<std::ptrdiff_t>(k * n_sites),
                                                               point.begin() + static_cast<std::ptrdiff_t>((k + 1) * n_sites));
  std::vector<Site> t1(n_sites), t2(n_sites);
  for (std::size_t s = 0; s < n_sites; ++s) {
    t1[s] = translate(s, 1, 0);
    t2[s] = translate(s, 0, 1);
  }
  generators.push_back(t1);
  generators.push_back(t2);
  for (std::size_t e = 0; e < G.order_; ++e) {
    const Site* p = G.perm(e);
    for (std::size_t q = 0; q < generators.size(); ++q) {
      for (std::size_t s = 0; s < n_sites; ++s) images[s] = p[generators[q][s]];
      if (G.find(images.data()) < 0) {
        throw std::invalid_argument(
            "the point operations do not form a group on this supercell: a product with " +
            (q < n_ops ? op_name(q) : std::string("a lattice translation")) + " is missing");
      }
    }
  }
  return G;
}

SymmetryGroup SymmetryGroup::from_permutations(const std::int32_t* perms, std::size_t n_perms, std::size_t n_sites,
                                               const std::int32_t* site_types) {
  if (n_perms == 0) throw std::invalid_argument("no permutations given");
  if (n_sites == 0) throw std::invalid_argument("permutations act on no sites");
  if (n_sites > std::numeric_limits<Site>::max())
    throw std::invalid_argument(std::to_string(n_sites) + " sites; at most 65535 are supported");
  SymmetryGroup G;
  G.n_sites_ = n_sites;
  G.order_ = n_perms;
  G.site_types_.assign(site_types, site_types + n_sites);
  G.perms_.resize(n_perms * n_sites);
  std::vector<char> seen(n_sites);
  for (std::size_t g = 0; g < n_perms; ++g) {
    std::fill(seen.begin(), seen.end(), 0);
    for (std::size_t s = 0; s < n_sites; ++s) {
      const std::int32_t t = perms[g * n_sites + s];
      if (t < 0 || static_cast<std::size_t>(t) >= n_sites)
        throw std::invalid_argument("permutation " + std::to_string(g) + " maps site " + std::to_string(s) + " to " +
                                    std::to_string(t) + ", outside 0.." + std::to_string(n_sites - 1));
      if (seen[static_cast<std::size_t>(t)])
        throw std::invalid_argument("permutation " + std::to_string(g) + " maps two sites onto site " + std::to_string(t));
      if (site_types[t] != site_types[s])
        throw std::invalid_argument("permutation " + std::to_string(g) + " maps site " + std::to_string(s) +
                                    " onto site " + std::to_string(t) + " of another species");
      seen[static_cast<std::size_t>(t)] = 1;
      G.perms_[g * n_sites + s] = static_cast<Site>(t);
    }
  }
  G.finalize();
  std::vector<Site> images(n_sites);
  for (std::size_t a = 0; a < n_perms; ++a)
    for (std::size_t b = 0; b < n_perms; ++b) {
      const Site* pa = G.perm(a);
      const Site* pb = G.perm(b);
      for (std::size_t s = 0; s < n_sites; ++s) images[s] = pa[pb[s]];
      if (G.find(images.data()) < 0)
        throw std::invalid_argument("not closed: permutation " + std::to_string(a) + " composed with " +
                                    std::to_string(b) + " is not in the set");
    }
  return G;
}

}  // namespace defectspace
