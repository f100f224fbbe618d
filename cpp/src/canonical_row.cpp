// Canonical form of one placement: extract its defects, pick anchor candidates from invariants,
// then take the smallest image over the few group elements that bring an anchor to its orbit
// representative (and its nearest partner to the smallest site the stabilizer allows).
#include <algorithm>
#include <cstring>
#include <limits>

#include "defectspace/bits.hpp"
#include "defectspace/detail/canonical_row.hpp"

namespace defectspace {
namespace detail {
namespace {

inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Environment signatures cost one pair-class look-up per defect and anchor; they pay off only
// when many anchors would each contribute a coset of candidates.
constexpr std::size_t kSignatureMinAnchors = 3;

void reset(const Canonicalizer& c, Workspace& w) {
  const std::size_t stride = c.n_kinds() + 1;
  if (w.counts.size() != stride) {
    w.counts.assign(stride, 0);
    w.rank.assign(stride, 0);
  }
  w.sites.clear();
  w.kinds.clear();
  std::fill(w.counts.begin(), w.counts.end(), 0U);
}

void add_defect(Workspace& w, std::size_t site, std::uint8_t kind) {
  w.sites.push_back(static_cast<Site>(site));
  w.kinds.push_back(kind);
  ++w.counts[kind];
}

void write_empty(const Canonicalizer& c, std::uint8_t* canonical, std::uint8_t* key, std::int64_t* orbit,
                 std::int64_t* op) {
  if (canonical) std::memset(canonical, 0, c.n_sites());
  if (key) std::memset(key, 0, c.key_bytes());
  if (orbit) *orbit = 1;
  if (op) *op = static_cast<std::int64_t>(c.group().identity());
}

// Ranks the present kinds by (count, kind) into w.rank, an order every image shares; returns the
// number of present kinds and sets *anchor to the kind of rank 0.
std::uint32_t rank_present_kinds(Workspace& w, std::size_t n_kinds, std::uint8_t* anchor) {
  std::uint32_t n_present = 0;
  std::uint32_t present[256];
  for (std::uint32_t k = 1; k <= n_kinds; ++k)
    if (w.counts[k]) present[n_present++] = k;
  std::sort(present, present + n_present, [&](std::uint32_t a, std::uint32_t b) {
    return w.counts[a] != w.counts[b] ? w.counts[a] < w.counts[b] : a < b;
  });
  for (std::uint32_t r = 0; r < n_present; ++r) w.rank[present[r]] = r;
  *anchor = static_cast<std::uint8_t>(present[0]);
  return n_present;
}

// Anchor candidates: the defects of the anchor kind on the orbit with the smallest representative
// (into w.anchors); returns that representative.
Site collect_anchors(const SymmetryGroup& G, Workspace& w, std::uint8_t anchor_kind) {
  const std::size_t nd = w.sites.size();
  Site m_star = std::numeric_limits<Site>::max();
  for (std::size_t d = 0; d < nd; ++d)
    if (w.kinds[d] == anchor_kind) m_star = std::min(m_star, G.orbit_rep(w.sites[d]));
  w.anchors.clear();
  for (std::size_t d = 0; d < nd; ++d)
    if (w.kinds[d] == anchor_kind && G.orbit_rep(w.sites[d]) == m_star) w.anchors.push_back(static_cast<std::uint32_t>(d));
  return m_star;
}

// Keeps, among many anchors, those with the smallest invariant environment signature (a sum over
// the other defects of a hash of (pair class, kind)).
void keep_anchors_of_smallest_environment(const SymmetryGroup& G, Workspace& w, std::size_t stride) {
  if (w.anchors.size() <= kSignatureMinAnchors) return;
  const std::size_t nd = w.sites.size();
  w.signatures.resize(w.anchors.size());
  std::uint64_t best_sig = std::numeric_limits<std::uint64_t>::max();
  for (std::size_t a = 0; a < w.anchors.size(); ++a) {
    const std::size_t d = w.anchors[a];
    const auto row = G.pair_classes_from(w.sites[d]);
    std::uint64_t sig = 0;
    for (std::size_t e = 0; e < nd; ++e) {
      if (e == d) continue;
      sig += mix64(static_cast<std::uint64_t>(row.of(w.sites[e])) * stride + w.kinds[e]);
    }
    w.signatures[a] = sig;
    best_sig = std::min(best_sig, sig);
  }
  std::size_t kept = 0;
  for (std::size_t a = 0; a < w.anchors.size(); ++a)
    if (w.signatures[a] == best_sig) w.anchors[kept++] = w.anchors[a];
  w.anchors.resize(kept);
}

// Second anchor: among the defects paired with a kept anchor, those with the smallest invariant
// (kind rank, pair class) go into w.pairs. A candidate must also bring the partner to the smallest
// site t* that the stabilizer of m* can bring it to; returns t* (0 for a single defect).
Site pair_anchors_with_partners(const SymmetryGroup& G, Workspace& w, Site m_star) {
  const std::size_t nd = w.sites.size();
  w.pairs.clear();
  if (nd == 1) {
    w.pairs.push_back({w.anchors[0], w.anchors[0]});
    return 0;
  }
  std::uint64_t best2 = std::numeric_limits<std::uint64_t>::max();
  for (const std::uint32_t d : w.anchors) {
    const auto row = G.pair_classes_from(w.sites[d]);
    for (std::size_t e = 0; e < nd; ++e) {
      if (e == d) continue;
      const std::uint64_t k2 = static_cast<std::uint64_t>(w.rank[w.kinds[e]]) << 32 | row.of(w.sites[e]);
      if (k2 < best2) {
        best2 = k2;
        w.pairs.clear();
      }
      if (k2 == best2) w.pairs.push_back({d, static_cast<std::uint32_t>(e)});
    }
  }
  const auto& pr = w.pairs[0];
  return G.stab_min(m_star, G.element(*G.coset_begin(w.sites[pr.first]))[w.sites[pr.second]]);
}

// Groups the defect sites by kind rank into w.seg_sites (rank r at seg_start[r]..seg_start[r+1]).
void group_sites_by_rank(Workspace& w, std::uint32_t n_present) {
  const std::size_t nd = w.sites.size();
  w.seg_sites.resize(nd);
  w.seg_start.assign(n_present + 1, 0);
  for (std::size_t e = 0; e < nd; ++e) ++w.seg_start[w.rank[w.kinds[e]] + 1];
  for (std::uint32_t r = 0; r < n_present; ++r) w.seg_start[r + 1] += w.seg_start[r];
  w.fill.assign(w.seg_start.begin(), w.seg_start.end() - 1);
  for (std::size_t e = 0; e < nd; ++e) w.seg_sites[w.fill[w.rank[w.kinds[e]]]++] = w.sites[e];
}

// Writes into cur the image of the rank segment [b, e_end) under p, sorted; small segments by
// insertion, large ones by std::sort.
template <class Element>
void sorted_segment_image(const Element& p, const Workspace& w, std::size_t b, std::size_t e_end, std::uint32_t* cur) {
  if (e_end - b <= 32) {
    for (std::size_t e = b; e < e_end; ++e) {
      const std::uint32_t v = p[w.seg_sites[e]];
      std::size_t i = e;
      while (i > b && cur[i - 1] > v) {
        cur[i] = cur[i - 1];
        --i;
      }
      cur[i] = v;
    }
  } else {
    for (std::size_t e = b; e < e_end; ++e) cur[e] = p[w.seg_sites[e]];
    std::sort(cur + b, cur + e_end);
  }
}

struct SmallestImage {
  std::size_t g = 0;      // first candidate reaching the smallest image
  std::size_t ties = 0;   // candidates reaching it: the stabilizer's order
};

// Smallest image over the candidate elements. The image of x under g is the concatenation, by kind
// rank, of the sorted image sites of that rank's defects; images are compared lexicographically
// segment by segment, so most candidates stop after the anchor's segment.
SmallestImage smallest_image(const SymmetryGroup& G, Workspace& w, std::uint32_t n_present, Site t_star) {
  const std::size_t nd = w.sites.size();
  w.current.resize(nd);
  w.best.resize(nd);
  SmallestImage result;
  bool have_best = false;
  for (const auto& pr : w.pairs) {
    const Site d_site = w.sites[pr.first];
    const Site e_site = w.sites[pr.second];
    for (const std::uint32_t* g = G.coset_begin(d_site); g != G.coset_end(d_site); ++g) {
      const auto p = G.element(*g);
      if (nd > 1 && p[e_site] != t_star) continue;
      int cmp = have_best ? 0 : -1;
      std::uint32_t* cur = w.current.data();
      for (std::uint32_t r = 0; r < n_present; ++r) {
        const std::size_t b = w.seg_start[r];
        const std::size_t e_end = w.seg_start[r + 1];
        sorted_segment_image(p, w, b, e_end, cur);
        if (cmp == 0) {
          for (std::size_t e = b; e < e_end; ++e)
            if (cur[e] != w.best[e]) {
              cmp = cur[e] < w.best[e] ? -1 : 1;
              break;
            }
          if (cmp > 0) break;
        }
      }
      if (cmp < 0) {
        std::swap(w.current, w.best);
        result.g = *g;
        result.ties = 1;
        have_best = true;
      } else if (cmp == 0) {
        ++result.ties;
      }
    }
  }
  return result;
}

// Writes the placement moved by element g as a dense row (n_sites bytes).
void write_canonical(const Canonicalizer& c, const Workspace& w, const SymmetryGroup::Element& pg,
                     std::uint8_t* canonical) {
  std::memset(canonical, 0, c.n_sites());
  for (std::size_t e = 0; e < w.sites.size(); ++e) canonical[pg[w.sites[e]]] = w.kinds[e];
}

// Writes the key of the placement moved by element g: each site's local code in bits_per_site
// bits, site s at bit s * bits_per_site, least significant bit first.
void write_key(const Canonicalizer& c, const Workspace& w, const SymmetryGroup::Element& pg, std::uint8_t* key) {
  const std::size_t bps = c.bits_per_site();
  std::memset(key, 0, c.key_bytes());
  if (8 % bps == 0) {  // a site's bits never straddle two bytes
    for (std::size_t e = 0; e < w.sites.size(); ++e) {
      const std::size_t bit = static_cast<std::size_t>(pg[w.sites[e]]) * bps;
      key[bit >> 3] = static_cast<std::uint8_t>(key[bit >> 3] | (c.local_code(w.kinds[e]) << (bit & 7U)));
    }
    return;
  }
  for (std::size_t e = 0; e < w.sites.size(); ++e) {
    const std::size_t code = c.local_code(w.kinds[e]);
    const std::size_t bit = static_cast<std::size_t>(pg[w.sites[e]]) * bps;
    for (std::size_t b = 0; b < bps; ++b)
      if (code >> b & 1U) key[(bit + b) >> 3] = static_cast<std::uint8_t>(key[(bit + b) >> 3] | (1U << ((bit + b) & 7U)));
  }
}

}  // namespace

bool extract_dense(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::size_t* bad_site) {
  const std::size_t n = c.n_sites();
  reset(c, w);
  // Host atoms are skipped eight bytes at a time.
  std::size_t s = 0;
  for (; s + 8 <= n; s += 8) {
    std::uint64_t word;
    std::memcpy(&word, x + s, 8);
    while (word != 0) {
      const unsigned bit = ctz64(word) & ~7U;
      word &= ~(std::uint64_t{0xFF} << bit);
      const std::size_t u = s + byte_of_bit(bit);
      if (!c.allowed(u, x[u])) {
        if (bad_site) *bad_site = u;
        return false;
      }
      add_defect(w, u, x[u]);
    }
  }
  for (; s < n; ++s) {
    if (x[s] == 0) continue;
    if (!c.allowed(s, x[s])) {
      if (bad_site) *bad_site = s;
      return false;
    }
    add_defect(w, s, x[s]);
  }
  return true;
}

bool extract_sparse(const Canonicalizer& c, const std::int32_t* sites, const std::uint8_t* codes, std::size_t count,
                    Workspace& w, std::string* error) {
  const std::size_t n = c.n_sites();
  reset(c, w);
  if (w.seen.size() != n) w.seen.assign(n, 0);
  bool ok = true;
  for (std::size_t i = 0; i < count; ++i) {
    const std::int32_t s = sites[i];
    const std::uint8_t code = codes[i];
    if (s < 0 || static_cast<std::size_t>(s) >= n) {
      *error = "site " + std::to_string(s) + " out of range 0.." + std::to_string(n - 1);
      ok = false;
      break;
    }
    const auto u = static_cast<std::size_t>(s);
    if (code == 0 || !c.allowed(u, code)) {
      *error = "site " + std::to_string(s) + " cannot hold defect code " + std::to_string(code);
      ok = false;
      break;
    }
    if (w.seen[u]) {
      *error = "site " + std::to_string(s) + " is listed twice";
      ok = false;
      break;
    }
    w.seen[u] = 1;
    add_defect(w, u, code);
  }
  for (const Site u : w.sites) w.seen[u] = 0;
  return ok;
}

void canonicalize_extracted(const Canonicalizer& c, Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                            std::int64_t* orbit, std::int64_t* op) {
  const SymmetryGroup& G = c.group();
  if (w.sites.empty()) {
    write_empty(c, canonical, key, orbit, op);
    return;
  }
  std::uint8_t anchor_kind = 0;
  const std::uint32_t n_present = rank_present_kinds(w, c.n_kinds(), &anchor_kind);
  const Site m_star = collect_anchors(G, w, anchor_kind);
  keep_anchors_of_smallest_environment(G, w, c.n_kinds() + 1);
  const Site t_star = pair_anchors_with_partners(G, w, m_star);
  group_sites_by_rank(w, n_present);
  const SmallestImage best = smallest_image(G, w, n_present, t_star);
  const auto pb = G.element(best.g);
  if (canonical) write_canonical(c, w, pb, canonical);
  if (key) write_key(c, w, pb, key);
  if (orbit) *orbit = static_cast<std::int64_t>(G.order() / best.ties);
  if (op) *op = static_cast<std::int64_t>(best.g);
}

bool canonicalize_row(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::uint8_t* canonical,
                      std::uint8_t* key, std::int64_t* orbit, std::int64_t* op, std::size_t* bad_site) {
  if (!extract_dense(c, x, w, bad_site)) return false;
  canonicalize_extracted(c, w, canonical, key, orbit, op);
  return true;
}

}  // namespace detail
}  // namespace defectspace
