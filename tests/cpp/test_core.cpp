// Tests of the C++ core without Python: group axioms on supercells of a MoS2-like lattice (with
// and without a dense permutation table), invariance of canonical forms under every group element,
// and enumeration counts against 2DMD's and Burnside's. Built with DEFECTSPACE_BUILD_TESTS=ON, run
// by ctest; exits non-zero with one line per failed check.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "defectspace/canonical.hpp"
#include "defectspace/enumerate.hpp"
#include "defectspace/group.hpp"
#include "defectspace/random.hpp"

namespace {

using defectspace::Canonicalizer;
using defectspace::Site;
using defectspace::SymmetryGroup;

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    ++g_checks;                                                                      \
    if (!(cond)) {                                                                   \
      ++g_failures;                                                                  \
      if (g_failures <= 50) std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                                \
  } while (0)

// 2H MoS2 (spglib's 12 operations of layer group 78 on the 2DMD cell): basis Mo, S top, S bottom;
// rotations act on fractional column vectors, R.p_L + t = p_{map(L)} + shift.
constexpr std::int32_t kRotations[12][4] = {{1, 0, 0, 1},   {-1, 1, -1, 0}, {0, -1, 1, -1}, {1, 0, 0, 1},
                                            {-1, 1, -1, 0}, {0, -1, 1, -1}, {0, -1, -1, 0}, {1, 0, 1, -1},
                                            {-1, 1, 0, 1},  {0, -1, -1, 0}, {1, 0, 1, -1},  {-1, 1, 0, 1}};
constexpr std::int32_t kBasisMap[12][3] = {{0, 1, 2}, {0, 2, 1}, {0, 1, 2}, {0, 2, 1}, {0, 1, 2}, {0, 2, 1},
                                           {0, 2, 1}, {0, 1, 2}, {0, 2, 1}, {0, 1, 2}, {0, 2, 1}, {0, 1, 2}};
constexpr std::int32_t kShifts[12][3][2] = {
    {{0, 0}, {0, 0}, {0, 0}},      {{0, -1}, {-1, -1}, {-1, -1}}, {{-1, -1}, {-1, 0}, {-1, 0}},
    {{0, 0}, {0, 0}, {0, 0}},      {{0, -1}, {-1, -1}, {-1, -1}}, {{-1, -1}, {-1, 0}, {-1, 0}},
    {{-1, -1}, {-1, -1}, {-1, -1}}, {{0, -1}, {0, 0}, {0, 0}},     {{0, 0}, {-1, 0}, {-1, 0}},
    {{-1, -1}, {-1, -1}, {-1, -1}}, {{0, -1}, {0, 0}, {0, 0}},     {{0, 0}, {-1, 0}, {-1, 0}}};
constexpr std::int32_t kBasisTypes[3] = {0, 1, 1};     // Mo, S, S
constexpr std::int32_t kKindSiteType[4] = {0, 0, 1, 1};  // codes 1 Mo->V, 2 Mo->W, 3 S->V, 4 S->Se

// The group of the operations that map the n1 x n2 supercell onto itself (all 12 when n1 == n2).
std::shared_ptr<const SymmetryGroup> mos2_group(std::int32_t n1, std::int32_t n2) {
  std::vector<std::int32_t> rot, map, sh;
  std::size_t n_ops = 0;
  for (std::size_t k = 0; k < 12; ++k) {
    if ((kRotations[k][2] * n1) % n2 != 0 || (kRotations[k][1] * n2) % n1 != 0) continue;
    rot.insert(rot.end(), kRotations[k], kRotations[k] + 4);
    map.insert(map.end(), kBasisMap[k], kBasisMap[k] + 3);
    sh.insert(sh.end(), &kShifts[k][0][0], &kShifts[k][0][0] + 6);
    ++n_ops;
  }
  return std::make_shared<const SymmetryGroup>(
      SymmetryGroup::from_point_operations(rot.data(), map.data(), sh.data(), n_ops, 3, kBasisTypes, n1, n2));
}

int mod(std::int64_t a, std::int64_t n) { return static_cast<int>(((a % n) + n) % n); }

// Image of site s under T(a, b) . P_k, computed from the tables alone.
std::size_t expected_image(std::size_t s, std::uint32_t k, std::uint32_t a, std::uint32_t b, int n1, int n2) {
  const int L = static_cast<int>(s % 3);
  const int cell = static_cast<int>(s / 3);
  const int i = cell / n2, j = cell % n2;
  const std::int32_t* R = kRotations[k];
  const int ip = mod(static_cast<std::int64_t>(R[0]) * i + R[1] * j + kShifts[k][L][0] + a, n1);
  const int jp = mod(static_cast<std::int64_t>(R[2]) * i + R[3] * j + kShifts[k][L][1] + b, n2);
  return static_cast<std::size_t>(3 * (ip * n2 + jp) + kBasisMap[k][L]);
}

std::vector<Site> images_of(const SymmetryGroup& G, std::size_t g) {
  std::vector<Site> out(G.n_sites());
  const auto e = G.element(g);
  for (std::size_t s = 0; s < G.n_sites(); ++s) out[s] = e[s];
  return out;
}

// Group axioms and structure; every element when check_all, else every 7th (large groups).
void test_group_axioms(std::int32_t n1, std::int32_t n2, bool check_all) {
  const auto Gp = mos2_group(n1, n2);
  const SymmetryGroup& G = *Gp;
  const std::size_t n = G.n_sites();
  CHECK(n == static_cast<std::size_t>(3 * n1 * n2));
  CHECK(G.order() == static_cast<std::size_t>(12 * n1 * n2));
  CHECK(G.supercell().first == static_cast<std::uint32_t>(n1) && G.supercell().second == static_cast<std::uint32_t>(n2));
  const auto id = images_of(G, G.identity());
  for (std::size_t s = 0; s < n; ++s) CHECK(id[s] == s);
  const std::size_t step = check_all ? 1 : 7;
  defectspace::Rng rng(1, 0);
  for (std::size_t g = 0; g < G.order(); g += step) {
    const auto p = images_of(G, g);
    // matches the tables, is a permutation, keeps site types, is found by its images
    const auto kab = G.element_operation(g);
    std::vector<char> hit(n, 0);
    for (std::size_t s = 0; s < n; ++s) {
      CHECK(p[s] == expected_image(s, kab[0], kab[1], kab[2], n1, n2));
      CHECK(!hit[p[s]]);
      hit[p[s]] = 1;
      CHECK(G.site_types()[p[s]] == G.site_types()[s]);
    }
    CHECK(G.find(p.data()) == static_cast<std::int64_t>(g));
    // inverse, closure, associativity
    const auto q = images_of(G, G.inverse(g));
    for (std::size_t s = 0; s < n; ++s) CHECK(q[p[s]] == s);
    CHECK(G.compose(g, G.inverse(g)) == G.identity());
    const std::size_t h = static_cast<std::size_t>(rng.below(G.order()));
    const std::size_t f = static_cast<std::size_t>(rng.below(G.order()));
    const std::size_t gh = G.compose(g, h);
    const auto pgh = images_of(G, gh);
    const auto ph = images_of(G, h);
    for (std::size_t s = 0; s < n; ++s) CHECK(pgh[s] == p[ph[s]]);
    CHECK(G.compose(gh, f) == G.compose(g, G.compose(h, f)));
  }
  // orbits: the representative is the smallest image; cosets bring each site there
  std::vector<Site> smallest(n, static_cast<Site>(n));
  for (std::size_t g = 0; g < G.order(); ++g) {
    const auto e = G.element(g);
    for (std::size_t s = 0; s < n; ++s) smallest[s] = std::min(smallest[s], e[s]);
  }
  for (std::size_t s = 0; s < n; ++s) {
    CHECK(G.orbit_rep(s) == smallest[s]);
    const std::size_t orbit_length = static_cast<std::size_t>(n1 * n2) * (s % 3 == 0 ? 1 : 2);
    CHECK(static_cast<std::size_t>(G.coset_end(s) - G.coset_begin(s)) * orbit_length == G.order());
    for (const std::uint32_t* g = G.coset_begin(s); g != G.coset_end(s); ++g) CHECK(G.element(*g)[s] == G.orbit_rep(s));
    CHECK(std::is_sorted(G.coset_begin(s), G.coset_end(s)));
  }
  // pair classes are invariant
  for (int t = 0; t < 200; ++t) {
    const auto s = static_cast<std::size_t>(rng.below(n));
    const auto u = static_cast<std::size_t>(rng.below(n));
    const auto e = G.element(static_cast<std::size_t>(rng.below(G.order())));
    CHECK(G.pair_class(s, u) == G.pair_class(e[s], e[u]));
  }
}

// 1 x N supercells: operations that coincide on the sites are one element (1 x 300 read past the
// permutation table once).
void test_thin_supercell(std::int32_t n2) {
  const auto Gp = mos2_group(1, n2);
  const SymmetryGroup& G = *Gp;
  CHECK(G.order() == static_cast<std::size_t>(2 * n2));
  std::set<std::vector<Site>> distinct;
  for (std::size_t g = 0; g < G.order(); ++g) {
    const auto p = images_of(G, g);
    distinct.insert(p);
    CHECK(G.find(p.data()) == static_cast<std::int64_t>(g));
  }
  CHECK(distinct.size() == G.order());
}

std::vector<std::uint8_t> random_placement(const Canonicalizer& c, double density, defectspace::Rng& rng) {
  std::vector<std::uint8_t> x(c.n_sites(), 0);
  for (std::size_t s = 0; s < x.size(); ++s) {
    if (rng.uniform() >= density) continue;
    const std::uint8_t first = s % 3 == 0 ? 1 : 3;  // Mo sites take codes 1, 2; S sites 3, 4
    x[s] = static_cast<std::uint8_t>(first + rng.below(2));
  }
  return x;
}

// Canonical forms: the same key, orbit size and canonical row for every image g.x (every element
// when check_all, else 64 random ones), reached by the reported operation, idempotent, packed alike.
void test_canonical_invariance(std::int32_t n1, std::int32_t n2, double density, int n_placements, bool check_all) {
  const auto G = mos2_group(n1, n2);
  const Canonicalizer c(G, kKindSiteType, 4);
  const std::size_t n = c.n_sites();
  const std::size_t kb = c.key_bytes();
  defectspace::Rng rng(42, static_cast<std::uint64_t>(n1 * 1000 + n2));
  std::vector<std::uint8_t> canon(n), key(kb), canon_y(n), key_y(kb), y(n), packed(kb);
  std::int64_t orbit = 0, op = 0, orbit_y = 0, op_y = 0;
  for (int t = 0; t < n_placements; ++t) {
    const auto x = random_placement(c, density, rng);
    c.canonicalize(x.data(), 1, canon.data(), key.data(), &orbit, &op, 1);
    c.apply(x.data(), &op, 1, y.data());
    CHECK(y == canon);
    c.pack_key(canon.data(), packed.data());
    CHECK(packed == key);
    c.canonicalize(canon.data(), 1, canon_y.data(), key_y.data(), &orbit_y, &op_y, 1);
    CHECK(canon_y == canon && key_y == key && orbit_y == orbit);
    CHECK(orbit > 0 && G->order() % static_cast<std::size_t>(orbit) == 0);
    std::set<std::vector<std::uint8_t>> images;
    const std::size_t n_images = check_all ? G->order() : 64;
    for (std::size_t i = 0; i < n_images; ++i) {
      const auto g = static_cast<std::int64_t>(check_all ? i : rng.below(G->order()));
      c.apply(x.data(), &g, 1, y.data());
      if (check_all) images.insert(y);
      c.canonicalize(y.data(), 1, canon_y.data(), key_y.data(), &orbit_y, &op_y, 1);
      CHECK(key_y == key && canon_y == canon && orbit_y == orbit);
    }
    if (check_all) CHECK(images.size() == static_cast<std::size_t>(orbit));
  }
  // batches on several threads agree with single rows
  std::vector<std::uint8_t> batch;
  for (int t = 0; t < 300; ++t) {
    const auto x = random_placement(c, density, rng);
    batch.insert(batch.end(), x.begin(), x.end());
  }
  std::vector<std::uint8_t> keys1(300 * kb), keys2(300 * kb);
  c.canonicalize(batch.data(), 300, nullptr, keys1.data(), nullptr, nullptr, 1);
  c.canonicalize(batch.data(), 300, nullptr, keys2.data(), nullptr, nullptr, 2);
  CHECK(keys1 == keys2);
}

// Number of placements with exactly `counts` (codes 1..4) fixed by each element, averaged (Burnside).
std::int64_t burnside_count(const SymmetryGroup& G, const std::vector<int>& counts) {
  const std::size_t n = G.n_sites();
  std::int64_t total = 0;
  for (std::size_t g = 0; g < G.order(); ++g) {
    const auto e = G.element(g);
    std::map<std::vector<int>, std::int64_t> poly{{std::vector<int>(4, 0), 1}};
    std::vector<char> seen(n, 0);
    for (std::size_t s = 0; s < n; ++s) {
      if (seen[s]) continue;
      int length = 0;
      for (std::size_t t = s; !seen[t]; t = e[t]) {
        seen[t] = 1;
        ++length;
      }
      std::map<std::vector<int>, std::int64_t> next;
      for (const auto& [mono, coef] : poly) {
        next[mono] += coef;  // the cycle keeps its host atoms
        for (int code = 1; code <= 4; ++code) {
          if (kKindSiteType[code - 1] != G.site_types()[s]) continue;
          auto m = mono;
          m[static_cast<std::size_t>(code - 1)] += length;
          if (m[static_cast<std::size_t>(code - 1)] <= counts[static_cast<std::size_t>(code - 1)]) next[m] += coef;
        }
      }
      poly.swap(next);
    }
    total += poly[counts];
  }
  CHECK(total % static_cast<std::int64_t>(G.order()) == 0);
  return total / static_cast<std::int64_t>(G.order());
}

std::int64_t binomial(std::int64_t n, std::int64_t k) {
  std::int64_t r = 1;
  for (std::int64_t i = 1; i <= k; ++i) r = r * (n - k + i) / i;
  return r;
}

// Distinct placements of one defect multiset (counts of codes 1..4); expected < 0 means "Burnside's".
void test_enumeration(std::int32_t n1, std::int32_t n2, const std::vector<int>& counts, std::int64_t expected) {
  const auto G = mos2_group(n1, n2);
  const Canonicalizer c(G, kKindSiteType, 4);
  const std::int64_t counts64[5] = {0, counts[0], counts[1], counts[2], counts[3]};
  const auto e = defectspace::enumerate_distinct(c, counts64, 2);
  const auto n_classes = static_cast<std::int64_t>(e.orbit.size());
  CHECK(n_classes == (expected >= 0 ? expected : burnside_count(*G, counts)));
  if (expected >= 0 && n1 * n2 <= 64) CHECK(n_classes == burnside_count(*G, counts));
  // orbit sizes add up to all placements; every class is its own canonical form
  const std::int64_t cells = n1 * n2;
  const std::int64_t all = binomial(cells, counts[0]) * binomial(cells - counts[0], counts[1]) *
                           binomial(2 * cells, counts[2]) * binomial(2 * cells - counts[2], counts[3]);
  std::int64_t sum = 0;
  for (const auto o : e.orbit) sum += o;
  CHECK(sum == all);
  std::vector<std::uint8_t> canon(c.n_sites());
  for (std::size_t r = 0; r < e.orbit.size(); ++r) {
    const std::uint8_t* x = e.states.data() + r * c.n_sites();
    c.canonicalize(x, 1, canon.data(), nullptr, nullptr, nullptr, 1);
    CHECK(std::memcmp(canon.data(), x, c.n_sites()) == 0);
  }
}

void test_bad_inputs_throw() {
  bool threw = false;
  try {
    const std::int32_t bad_map[12][3] = {{0, 1, 1}};  // two basis sites onto one
    (void)SymmetryGroup::from_point_operations(&kRotations[0][0], &bad_map[0][0], &kShifts[0][0][0], 1, 3,
                                               kBasisTypes, 2, 2);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {  // a 3-fold rotation without its square: C3's inverse is missing
    const std::int32_t rot[2][4] = {{1, 0, 0, 1}, {0, -1, 1, -1}};
    const std::int32_t map[2][3] = {{0, 1, 2}, {0, 1, 2}};
    const std::int32_t sh[2][3][2] = {{{0, 0}, {0, 0}, {0, 0}}, {{-1, -1}, {-1, 0}, {-1, 0}}};
    (void)SymmetryGroup::from_point_operations(&rot[0][0], &map[0][0], &sh[0][0][0], 2, 3, kBasisTypes, 3, 3);
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("not a group") != std::string::npos;
  }
  CHECK(threw);
}

}  // namespace

int main() {
  try {
    test_group_axioms(4, 4, true);
    test_group_axioms(2, 2, true);
    test_group_axioms(16, 16, false);  // table past 1 MB: element views
    test_thin_supercell(10);
    test_thin_supercell(300);
    test_canonical_invariance(4, 4, 0.1, 40, true);
    test_canonical_invariance(4, 4, 0.3, 40, true);
    test_canonical_invariance(8, 8, 0.02, 10, true);
    test_canonical_invariance(8, 8, 0.3, 10, true);
    test_canonical_invariance(16, 16, 0.1, 20, false);
    // 2DMD's 8x8 low-density classes (X2, X5, S3, S6 in its defect_types.csv)
    test_enumeration(8, 8, {0, 0, 2, 0}, 19);
    test_enumeration(8, 8, {0, 0, 1, 1}, 29);
    test_enumeration(8, 8, {0, 1, 2, 0}, 743);
    test_enumeration(8, 8, {0, 1, 1, 1}, 1415);
    test_enumeration(4, 4, {1, 1, 2, 1}, -1);
    test_enumeration(3, 3, {0, 0, 4, 2}, -1);
    test_bad_inputs_throw();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 2;
  }
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
