#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace defectspace {

/// Site index type: supercells hold at most 65535 sites.
using Site = std::uint16_t;

/// A finite group of permutations of the sites of a periodic supercell, checked to be a group.
/// Element g maps site s to element(g)[s]; placements transform as (g.x)[g(s)] = x[s].
/// Memory grows with order + n_sites for groups built from point operations (no dense
/// order x n_sites table once it would outgrow the cache), with order x n_sites for explicit ones.
class SymmetryGroup {
 public:
  /// Builds the supercell group from the point operations of the unit cell.
  /// rotations: n_ops x 2 x 2 integer in-plane rotations (row-major, acting on unit-cell fractional
  /// column vectors); basis_map: n_ops x n_basis, image basis index of each basis site;
  /// shifts: n_ops x n_basis x 2, integer cell shift so that R.p_L + t = p_{map(L)} + shift.
  /// site_types: n_basis host-type ids. Supercell n1 x n2; site = n_basis*(i*n2 + j) + L.
  /// Throws std::invalid_argument if an operation does not map the supercell onto itself or the
  /// result is not a group.
  static SymmetryGroup from_point_operations(const std::int32_t* rotations, const std::int32_t* basis_map,
                                             const std::int32_t* shifts, std::size_t n_ops,
                                             std::size_t n_basis, const std::int32_t* site_types,
                                             std::int32_t n1, std::int32_t n2);

  /// Builds a group from explicit permutations (n_perms x n_sites) after checking identity,
  /// bijectivity, site types preserved and closure (O(n_perms^2 n_sites)).
  static SymmetryGroup from_permutations(const std::int32_t* perms, std::size_t n_perms,
                                         std::size_t n_sites, const std::int32_t* site_types);

  /// Point operation and translation (k, a, b) of element g, for groups built from point
  /// operations (element = T(a, b) . P_k); empty otherwise.
  std::vector<std::uint32_t> element_operation(std::size_t g) const {
    if (elem_k_.empty()) return {};
    return {elem_k_[g], elem_a_[g], elem_b_[g]};
  }
  /// Supercell (n1, n2) of a group built from point operations; (0, 0) for explicit permutations.
  std::pair<std::uint32_t, std::uint32_t> supercell() const { return {n1_, n2_}; }
  /// Number of group elements.
  std::size_t order() const { return order_; }
  /// Number of sites the group acts on.
  std::size_t n_sites() const { return n_sites_; }
  /// Host-type id of each site.
  const std::vector<std::int32_t>& site_types() const { return site_types_; }
  /// Index of the identity element.
  std::size_t identity() const { return identity_; }
  /// Index of g^-1.
  std::size_t inverse(std::size_t g) const { return inverse_[g]; }
  /// Index of a.b (apply b first, then a).
  std::size_t compose(std::size_t a, std::size_t b) const;
  /// Index of the element with these n_sites images, or -1 if it is not in the group.
  std::int64_t find(const Site* images) const;
  /// Smallest site in the orbit of s.
  Site orbit_rep(std::size_t s) const { return orbit_rep_[s]; }
  /// Elements g with g(s) == orbit_rep(s), in increasing order; there are order/orbit_length(s).
  const std::uint32_t* coset_begin(std::size_t s) const { return coset_.data() + coset_offset_[s]; }
  /// End of coset_begin(s).
  const std::uint32_t* coset_end(std::size_t s) const { return coset_.data() + coset_offset_[s + 1]; }
  /// Smallest image of site t under the stabilizer of orbit representative rep.
  Site stab_min(std::size_t rep, std::size_t t) const {
    return stab_min_[static_cast<std::size_t>(rep_index_[rep]) * n_sites_ + t];
  }
  /// Invariant id of the ordered site pair (s, t): equal for (s, t) and (g s, g t) for all g.
  std::uint32_t pair_class(std::size_t s, std::size_t t) const { return pair_classes_from(s).of(t); }

  /// A cheap view of element g mapping sites: a row of the permutation table, or, for a group
  /// built from point operations whose table would not fit in cache, the point operation's row
  /// followed by a lattice translation computed on the fly.
  struct Element {
    const Site* row;            ///< the full permutation, or the point operation's row
    const SymmetryGroup* group; ///< null when row is the full permutation
    std::uint32_t a, b;         ///< translation in cells, when group is set
    /// Image of site s.
    Site operator[](std::size_t s) const { return group ? group->translate(row[s], a, b) : row[s]; }
  };
  /// The dense permutation table (order x n_sites, element g at g * n_sites), or null when
  /// elements are views.
  const Site* table() const { return perms_.empty() ? nullptr : perms_.data(); }
  /// View of element g.
  Element element(std::size_t g) const {
    if (!perms_.empty()) return {perms_.data() + g * n_sites_, nullptr, 0, 0};
    return {point_rows_.data() + static_cast<std::size_t>(elem_k_[g]) * n_sites_, this, elem_a_[g], elem_b_[g]};
  }
  /// Site s moved by a < n1 cells along the first and b < n2 along the second supercell vector.
  Site translate(Site s, std::uint32_t a, std::uint32_t b) const {
    std::uint32_t i = site_i_[s] + a;
    if (i >= n1_) i -= n1_;
    std::uint32_t j = site_j_[s] + b;
    if (j >= n2_) j -= n2_;
    return static_cast<Site>((i * n2_ + j) * n_basis_ + site_l_[s]);
  }

  /// Pair classes (s, t) for a fixed s and many t, with the per-s look-ups done once.
  struct PairClassRow {
    Element to_rep;         ///< an element bringing s to its representative
    const Site* stab_min;   ///< stabilizer minima of that representative
    std::uint32_t base;     ///< representative index * n_sites
    /// Pair class of (s, t).
    std::uint32_t of(std::size_t t) const { return base + stab_min[to_rep[t]]; }
  };
  /// Pair classes of (s, .).
  PairClassRow pair_classes_from(std::size_t s) const {
    const auto ri = static_cast<std::size_t>(rep_index_[orbit_rep_[s]]);
    return {element(coset_[coset_offset_[s]]), stab_min_.data() + ri * n_sites_,
            static_cast<std::uint32_t>(ri * n_sites_)};
  }

 private:
  SymmetryGroup() = default;
  // Construction steps, in the order they run (group.cpp).
  void list_distinct_elements(std::size_t n_ops);
  void fill_permutation_table();
  void index_elements();
  void find_identity();
  void find_inverses();
  void check_closure_of_point_operations(std::size_t n_ops) const;
  void check_closure_of_permutations() const;
  void find_orbits_and_cosets();
  void find_orbits_and_cosets_of_point_operations(std::size_t n_ops);
  void find_stabilizer_minima();
  // Element look-up by signature: the images of key_sites_ (all sites, or for groups built from
  // point operations the sites of three cells, which determine an affine map of the supercell).
  void signature(std::size_t g, Site* out) const;
  std::int64_t find_signature(const Site* sig) const;
  std::uint64_t hash_signature(const Site* sig) const;

  std::size_t order_ = 0;
  std::size_t n_sites_ = 0;
  std::size_t identity_ = 0;
  std::vector<Site> perms_;              // order x n_sites, or empty when elements are views
  std::vector<std::int32_t> site_types_;
  std::vector<std::uint32_t> inverse_;
  std::vector<Site> orbit_rep_;
  std::vector<std::uint32_t> coset_offset_;
  std::vector<std::uint32_t> coset_;
  std::vector<std::int32_t> rep_index_;  // orbit-representative site -> dense index, else -1
  std::vector<Site> stab_min_;           // [rep_index * n_sites + t] = min over Stab(rep) of h(t)
  std::vector<Site> key_sites_;          // sites whose images identify an element
  std::vector<std::uint32_t> table_;     // open-addressing hash of signatures -> element index + 1
  // Structure of groups built from point operations: element g = T(elem_a, elem_b) . P_elem_k.
  std::uint32_t n1_ = 0, n2_ = 0, n_basis_ = 0;
  std::vector<Site> point_rows_;                         // n_ops x n_sites images under P_k
  std::vector<std::uint32_t> elem_k_, elem_a_, elem_b_;  // (point op, a, b) of each element
  std::vector<std::uint16_t> site_i_, site_j_, site_l_;  // cell (i, j) and basis index of each site
};

}  // namespace defectspace
