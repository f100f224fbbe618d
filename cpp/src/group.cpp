#include "defectspace/group.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace defectspace {
namespace {

// Groups built from point operations keep a dense permutation table up to this size; beyond it
// element views (the point operation's row plus a translation) are faster, as the table no longer
// fits the per-core cache, and memory then grows with order + n_sites instead of their product.
constexpr std::size_t kDenseTableBytes = std::size_t{1} << 20;

std::int32_t mod(std::int64_t a, std::int32_t n) {
  auto r = static_cast<std::int32_t>(a % n);
  return r < 0 ? r + n : r;
}

std::string op_name(std::size_t k) { return "point operation " + std::to_string(k); }

// Checks the sizes of a supercell group and returns its number of sites.
std::size_t checked_supercell_sites(std::size_t n_ops, std::size_t n_basis, std::int32_t n1, std::int32_t n2) {
  if (n_ops == 0) throw std::invalid_argument("no point operations given");
  if (n_basis == 0) throw std::invalid_argument("the unit cell has no basis sites");
  if (n1 < 1 || n2 < 1)
    throw std::invalid_argument("supercell must be at least 1x1, got " + std::to_string(n1) + "x" + std::to_string(n2));
  const std::size_t n_cells = static_cast<std::size_t>(n1) * static_cast<std::size_t>(n2);
  const std::size_t n_sites = n_basis * n_cells;
  if (n_sites > std::numeric_limits<Site>::max())
    throw std::invalid_argument("supercell has " + std::to_string(n_sites) + " sites; at most 65535 are supported");
  if (n_ops * n_cells > std::numeric_limits<std::uint32_t>::max() / 2) throw std::invalid_argument("group too large");
  return n_sites;
}

// Checks point operation k: determinant +-1, maps the n1 x n2 supercell onto itself, maps every
// basis site onto a basis site of the same species.
void check_point_operation(std::size_t k, const std::int32_t* R, const std::int32_t* bmap, std::size_t n_basis,
                           const std::int32_t* site_types, std::int32_t n1, std::int32_t n2) {
  const std::int64_t det = static_cast<std::int64_t>(R[0]) * R[3] - static_cast<std::int64_t>(R[1]) * R[2];
  if (det != 1 && det != -1) throw std::invalid_argument(op_name(k) + " has determinant " + std::to_string(det) + ", not +-1");
  if ((static_cast<std::int64_t>(R[2]) * n1) % n2 != 0 || (static_cast<std::int64_t>(R[1]) * n2) % n1 != 0)
    throw std::invalid_argument(op_name(k) + " does not map the " + std::to_string(n1) + "x" + std::to_string(n2) +
                                " supercell onto itself");
  for (std::size_t L = 0; L < n_basis; ++L) {
    const std::int32_t Lp = bmap[L];
    if (Lp < 0 || static_cast<std::size_t>(Lp) >= n_basis)
      throw std::invalid_argument(op_name(k) + " maps basis site " + std::to_string(L) + " to " + std::to_string(Lp) +
                                  ", outside 0.." + std::to_string(n_basis - 1));
    if (site_types[Lp] != site_types[L])
      throw std::invalid_argument(op_name(k) + " maps basis site " + std::to_string(L) + " onto basis site " +
                                  std::to_string(Lp) + " of another species");
  }
}

// Images of every site under every point operation: n_ops x n_sites, site = n_basis*(i*n2 + j) + L.
std::vector<Site> point_operation_rows(const std::int32_t* rotations, const std::int32_t* basis_map,
                                       const std::int32_t* shifts, std::size_t n_ops, std::size_t n_basis,
                                       std::int32_t n1, std::int32_t n2) {
  const std::size_t n_sites = n_basis * static_cast<std::size_t>(n1) * static_cast<std::size_t>(n2);
  std::vector<Site> point(n_ops * n_sites);
  for (std::size_t k = 0; k < n_ops; ++k) {
    const std::int32_t* R = rotations + 4 * k;
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
  return point;
}

}  // namespace

// ----------------------------------------------------------------------------- look-up

void SymmetryGroup::signature(std::size_t g, Site* out) const {
  const Element e = element(g);
  for (std::size_t i = 0; i < key_sites_.size(); ++i) out[i] = e[key_sites_[i]];
}

std::uint64_t SymmetryGroup::hash_signature(const Site* sig) const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < key_sites_.size(); ++i) {
    h ^= sig[i];
    h *= 0x100000001b3ULL;
  }
  return h ^ (h >> 29);
}

std::int64_t SymmetryGroup::find_signature(const Site* sig) const {
  const std::size_t mask = table_.size() - 1;
  for (std::size_t slot = hash_signature(sig) & mask;; slot = (slot + 1) & mask) {
    const std::uint32_t entry = table_[slot];
    if (entry == 0) return -1;
    const Element e = element(entry - 1);
    std::size_t i = 0;
    while (i < key_sites_.size() && e[key_sites_[i]] == sig[i]) ++i;
    if (i == key_sites_.size()) return static_cast<std::int64_t>(entry - 1);
  }
}

std::int64_t SymmetryGroup::find(const Site* images) const {
  std::vector<Site> sig(key_sites_.size());
  for (std::size_t i = 0; i < key_sites_.size(); ++i) sig[i] = images[key_sites_[i]];
  const std::int64_t g = find_signature(sig.data());
  if (g < 0 || key_sites_.size() == n_sites_) return g;
  const Element e = element(static_cast<std::size_t>(g));
  for (std::size_t s = 0; s < n_sites_; ++s)
    if (e[s] != images[s]) return -1;
  return g;
}

std::size_t SymmetryGroup::compose(std::size_t a, std::size_t b) const {
  if (a >= order_ || b >= order_) throw std::invalid_argument("compose: element index out of range");
  const Element ea = element(a);
  const Element eb = element(b);
  std::vector<Site> sig(key_sites_.size());
  for (std::size_t i = 0; i < key_sites_.size(); ++i) sig[i] = ea[eb[key_sites_[i]]];
  const std::int64_t c = find_signature(sig.data());
  if (c < 0) throw std::logic_error("compose: product not in group");
  return static_cast<std::size_t>(c);
}

// ----------------------------------------------------------------------------- construction steps

// Elements T(a, b) . P_k in the order (k, a, b), one per distinct site permutation. On tiny
// supercells (1 x N, ...) two point operations can move the sites alike up to a translation; then
// every element of the later one repeats one of the earlier, and the later one is left out whole.
// Both are affine maps of the supercell, so comparing them on key_sites_ decides equality.
void SymmetryGroup::list_distinct_elements(std::size_t n_ops) {
  std::vector<std::size_t> kept;
  for (std::size_t k = 0; k < n_ops; ++k) {
    const Site* pk = point_rows_.data() + k * n_sites_;
    bool repeats = false;
    for (const std::size_t q : kept) {
      const Site* pq = point_rows_.data() + q * n_sites_;
      if (site_l_[pk[0]] != site_l_[pq[0]]) continue;
      const std::uint32_t a = (site_i_[pk[0]] + n1_ - site_i_[pq[0]]) % n1_;  // P_k = T(a, b) . P_q?
      const std::uint32_t b = (site_j_[pk[0]] + n2_ - site_j_[pq[0]]) % n2_;
      repeats = std::all_of(key_sites_.begin(), key_sites_.end(), [&](Site f) { return pk[f] == translate(pq[f], a, b); });
      if (repeats) break;
    }
    if (repeats) continue;
    kept.push_back(k);
    for (std::uint32_t a = 0; a < n1_; ++a)
      for (std::uint32_t b = 0; b < n2_; ++b) {
        elem_k_.push_back(static_cast<std::uint32_t>(k));
        elem_a_.push_back(a);
        elem_b_.push_back(b);
      }
  }
  order_ = elem_k_.size();
}

void SymmetryGroup::fill_permutation_table() {
  std::vector<Site> table(order_ * n_sites_);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* pk = point_rows_.data() + static_cast<std::size_t>(elem_k_[g]) * n_sites_;
    for (std::size_t s = 0; s < n_sites_; ++s) table[g * n_sites_ + s] = translate(pk[s], elem_a_[g], elem_b_[g]);
  }
  perms_.swap(table);
}

void SymmetryGroup::index_elements() {
  std::size_t cap = 16;
  while (cap < 2 * order_) cap <<= 1;
  table_.assign(cap, 0);
  const std::size_t mask = cap - 1;
  std::vector<Site> sig(key_sites_.size());
  for (std::size_t g = 0; g < order_; ++g) {
    signature(g, sig.data());
    const std::int64_t same = find_signature(sig.data());
    if (same >= 0)
      throw std::invalid_argument("symmetry operations " + std::to_string(same) + " and " + std::to_string(g) +
                                  " are the same site permutation");
    std::size_t slot = hash_signature(sig.data()) & mask;
    while (table_[slot] != 0) slot = (slot + 1) & mask;
    table_[slot] = static_cast<std::uint32_t>(g + 1);
  }
}

void SymmetryGroup::find_identity() {
  const std::int64_t id = find_signature(key_sites_.data());  // the identity fixes every key site
  if (id < 0) throw std::invalid_argument("the operations do not contain the identity");
  identity_ = static_cast<std::size_t>(id);
}

void SymmetryGroup::find_inverses() {
  inverse_.assign(order_, 0);
  std::vector<Site> sig(key_sites_.size());
  auto missing = [](std::size_t g) {
    return std::invalid_argument("the inverse of operation " + std::to_string(g) + " is missing: not a group");
  };
  if (!perms_.empty() && point_rows_.empty()) {  // explicit permutations, checked bijective
    std::vector<Site> images(n_sites_);
    for (std::size_t g = 0; g < order_; ++g) {
      const Site* p = perms_.data() + g * n_sites_;
      for (std::size_t s = 0; s < n_sites_; ++s) images[p[s]] = static_cast<Site>(s);
      const std::int64_t inv = find_signature(images.data());
      if (inv < 0) throw missing(g);
      inverse_[g] = static_cast<std::uint32_t>(inv);
    }
    return;
  }
  // (T(a, b) . P_k)^-1 = P_k^-1 . T(-a, -b); P_k^-1 exists when P_k is a bijection.
  const std::size_t n_ops = point_rows_.size() / n_sites_;
  std::vector<Site> point_inverse(point_rows_.size());
  std::vector<char> bijective(n_ops, 1);
  std::vector<char> hit(n_sites_);
  for (std::size_t k = 0; k < n_ops; ++k) {
    std::fill(hit.begin(), hit.end(), 0);
    for (std::size_t s = 0; s < n_sites_; ++s) {
      const Site t = point_rows_[k * n_sites_ + s];
      if (hit[t]) bijective[k] = 0;
      hit[t] = 1;
      point_inverse[k * n_sites_ + t] = static_cast<Site>(s);
    }
  }
  for (std::size_t g = 0; g < order_; ++g) {
    if (!bijective[elem_k_[g]]) throw missing(g);
    const Site* pinv = point_inverse.data() + static_cast<std::size_t>(elem_k_[g]) * n_sites_;
    const std::uint32_t a = (n1_ - elem_a_[g]) % n1_;
    const std::uint32_t b = (n2_ - elem_b_[g]) % n2_;
    for (std::size_t i = 0; i < key_sites_.size(); ++i) sig[i] = pinv[translate(key_sites_[i], a, b)];
    const std::int64_t inv = find_signature(sig.data());
    if (inv < 0) throw missing(g);
    inverse_[g] = static_cast<std::uint32_t>(inv);
  }
}

// The elements are {T(t) . P_k}: closed iff every product P_k . P_q is an element, because
// P_k . T(t) = T(R_k t) . P_k. Reports, as a check of every element against every generator would,
// the first operation q whose product with the first failing P_k is missing.
void SymmetryGroup::check_closure_of_point_operations(std::size_t n_ops) const {
  std::vector<Site> sig(key_sites_.size());
  for (std::size_t g = 0; g < order_; ++g) {
    if (elem_a_[g] != 0 || elem_b_[g] != 0) continue;
    const Site* pk = point_rows_.data() + static_cast<std::size_t>(elem_k_[g]) * n_sites_;
    for (std::size_t q = 0; q < n_ops; ++q) {
      const Site* pq = point_rows_.data() + q * n_sites_;
      for (std::size_t i = 0; i < key_sites_.size(); ++i) sig[i] = pk[pq[key_sites_[i]]];
      if (find_signature(sig.data()) < 0)
        throw std::invalid_argument("the point operations do not form a group on this supercell: a product with " +
                                    op_name(q) + " is missing");
    }
  }
}

void SymmetryGroup::check_closure_of_permutations() const {
  std::vector<Site> images(n_sites_);
  for (std::size_t a = 0; a < order_; ++a)
    for (std::size_t b = 0; b < order_; ++b) {
      const Site* pa = perms_.data() + a * n_sites_;
      const Site* pb = perms_.data() + b * n_sites_;
      for (std::size_t s = 0; s < n_sites_; ++s) images[s] = pa[pb[s]];
      if (find_signature(images.data()) < 0)
        throw std::invalid_argument("not closed: permutation " + std::to_string(a) + " composed with " +
                                    std::to_string(b) + " is not in the set");
    }
}

void SymmetryGroup::find_orbits_and_cosets() {
  orbit_rep_.assign(n_sites_, std::numeric_limits<Site>::max());
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perms_.data() + g * n_sites_;
    for (std::size_t s = 0; s < n_sites_; ++s) orbit_rep_[s] = std::min(orbit_rep_[s], p[s]);
  }
  coset_offset_.assign(n_sites_ + 1, 0);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perms_.data() + g * n_sites_;
    for (std::size_t s = 0; s < n_sites_; ++s)
      if (p[s] == orbit_rep_[s]) ++coset_offset_[s + 1];
  }
  for (std::size_t s = 0; s < n_sites_; ++s) coset_offset_[s + 1] += coset_offset_[s];
  coset_.assign(coset_offset_[n_sites_], 0);
  std::vector<std::uint32_t> fill(coset_offset_.begin(), coset_offset_.end() - 1);
  for (std::size_t g = 0; g < order_; ++g) {
    const Site* p = perms_.data() + g * n_sites_;
    for (std::size_t s = 0; s < n_sites_; ++s)
      if (p[s] == orbit_rep_[s]) coset_[fill[s]++] = static_cast<std::uint32_t>(g);
  }
}

// With every translation in the group, the orbit of site (cell, L) is every cell times the basis
// sites {map_k(L)}, so its smallest site is min_k map_k(L) in cell 0; each kept point operation k
// with map_k(L) equal to it brings the site there with exactly one translation.
void SymmetryGroup::find_orbits_and_cosets_of_point_operations(std::size_t n_ops) {
  std::vector<std::size_t> first_element(n_ops, order_);  // index of (k, 0, 0), order_ if k repeats another
  for (std::size_t g = 0; g < order_; ++g)
    if (elem_a_[g] == 0 && elem_b_[g] == 0) first_element[elem_k_[g]] = g;
  std::vector<Site> basis_rep(n_basis_, std::numeric_limits<Site>::max());
  for (std::size_t k = 0; k < n_ops; ++k) {
    if (first_element[k] == order_) continue;
    for (std::size_t L = 0; L < n_basis_; ++L)
      basis_rep[L] = std::min(basis_rep[L], static_cast<Site>(site_l_[point_rows_[k * n_sites_ + L]]));
  }
  orbit_rep_.resize(n_sites_);
  coset_offset_.assign(n_sites_ + 1, 0);
  coset_.clear();
  for (std::size_t s = 0; s < n_sites_; ++s) {
    const Site rep = basis_rep[site_l_[s]];
    orbit_rep_[s] = rep;
    for (std::size_t k = 0; k < n_ops; ++k) {
      if (first_element[k] == order_) continue;
      const Site image = point_rows_[k * n_sites_ + s];
      if (site_l_[image] != rep) continue;
      const std::uint32_t a = (n1_ - site_i_[image]) % n1_;
      const std::uint32_t b = (n2_ - site_j_[image]) % n2_;
      coset_.push_back(static_cast<std::uint32_t>(first_element[k] + a * n2_ + b));
    }
    coset_offset_[s + 1] = static_cast<std::uint32_t>(coset_.size());
  }
}

void SymmetryGroup::find_stabilizer_minima() {
  rep_index_.assign(n_sites_, -1);
  std::int32_t n_reps = 0;
  for (std::size_t s = 0; s < n_sites_; ++s)
    if (orbit_rep_[s] == s) rep_index_[s] = n_reps++;
  stab_min_.assign(static_cast<std::size_t>(n_reps) * n_sites_, std::numeric_limits<Site>::max());
  for (std::size_t r = 0; r < n_sites_; ++r) {
    if (rep_index_[r] < 0) continue;
    Site* row = stab_min_.data() + static_cast<std::size_t>(rep_index_[r]) * n_sites_;
    for (const std::uint32_t* h = coset_begin(r); h != coset_end(r); ++h) {
      const Element e = element(*h);
      for (std::size_t t = 0; t < n_sites_; ++t) row[t] = std::min(row[t], e[t]);
    }
  }
}

// ----------------------------------------------------------------------------- builders

SymmetryGroup SymmetryGroup::from_point_operations(const std::int32_t* rotations, const std::int32_t* basis_map,
                                                   const std::int32_t* shifts, std::size_t n_ops,
                                                   std::size_t n_basis, const std::int32_t* site_types,
                                                   std::int32_t n1, std::int32_t n2) {
  const std::size_t n_sites = checked_supercell_sites(n_ops, n_basis, n1, n2);
  for (std::size_t k = 0; k < n_ops; ++k)
    check_point_operation(k, rotations + 4 * k, basis_map + k * n_basis, n_basis, site_types, n1, n2);
  SymmetryGroup G;
  G.n_sites_ = n_sites;
  G.n1_ = static_cast<std::uint32_t>(n1);
  G.n2_ = static_cast<std::uint32_t>(n2);
  G.n_basis_ = static_cast<std::uint32_t>(n_basis);
  G.site_types_.resize(n_sites);
  G.site_i_.resize(n_sites);
  G.site_j_.resize(n_sites);
  G.site_l_.resize(n_sites);
  for (std::size_t s = 0; s < n_sites; ++s) {
    const std::size_t cell = s / n_basis;
    G.site_types_[s] = site_types[s % n_basis];
    G.site_i_[s] = static_cast<std::uint16_t>(cell / static_cast<std::size_t>(n2));
    G.site_j_[s] = static_cast<std::uint16_t>(cell % static_cast<std::size_t>(n2));
    G.site_l_[s] = static_cast<std::uint16_t>(s % n_basis);
  }
  // An affine map of the supercell is fixed by where it sends cells (0, 0), (1, 0) and (0, 1).
  for (const std::size_t cell : {std::size_t{0}, (1 % static_cast<std::size_t>(n1)) * static_cast<std::size_t>(n2),
                                 1 % static_cast<std::size_t>(n2)})
    for (std::size_t L = 0; L < n_basis; ++L) G.key_sites_.push_back(static_cast<Site>(cell * n_basis + L));
  G.point_rows_ = point_operation_rows(rotations, basis_map, shifts, n_ops, n_basis, n1, n2);
  G.list_distinct_elements(n_ops);
  if (G.order_ * n_sites * sizeof(Site) <= kDenseTableBytes) G.fill_permutation_table();
  G.index_elements();
  G.find_identity();
  G.find_inverses();
  G.check_closure_of_point_operations(n_ops);
  G.find_orbits_and_cosets_of_point_operations(n_ops);
  G.find_stabilizer_minima();
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
  G.key_sites_.resize(n_sites);
  for (std::size_t s = 0; s < n_sites; ++s) G.key_sites_[s] = static_cast<Site>(s);
  G.index_elements();
  G.find_identity();
  G.find_inverses();
  G.find_orbits_and_cosets();
  G.find_stabilizer_minima();
  G.check_closure_of_permutations();
  return G;
}

}  // namespace defectspace
