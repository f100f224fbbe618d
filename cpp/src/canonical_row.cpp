// Canonical form of one placement: extract its defects, pick anchor candidates from invariants,
// then take the smallest image over the few group elements that bring an anchor to its orbit
// representative m* (and its nearest partner to the smallest site t* the stabilizer allows).
//
// The image of x under g is the concatenation, by kind rank, of the sorted image sites of that
// rank's defects, compared lexicographically. For two equal-size sets A and B of sites, sorted A
// precedes sorted B exactly when the smallest site of A xor B lies in A, so dense rows compare
// their images as bitsets, 64 sites per word, instead of sorting them.
#include <algorithm>
#include <cstring>
#include <limits>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define DEFECTSPACE_SSE2 1
#endif

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
// Largest signature table kept (bytes); larger ones are computed term by term.
constexpr std::size_t kSignatureTableBytes = std::size_t{32} << 20;
// Images are compared as bitsets when a bitset has at most this many words and the row at least
// this many defects; otherwise as sorted lists (few defects on a large supercell).
constexpr std::size_t kMaxBitsetWords = 16;
constexpr std::size_t kMinDefectsPerWordForBitsets = 2;
// Keys of at most this many bytes are assembled in 64-bit words.
constexpr std::size_t kKeyWordBytes = 512;
// Largest table of pair classes by site pair kept (bytes): it saves a look-up per pair while it
// stays in the per-core cache.
constexpr std::size_t kPairClassTableBytes = std::size_t{256} << 10;
// Defects go straight into per-kind buckets of n_sites entries while these stay this small.
constexpr std::size_t kMaxBucketEntries = std::size_t{1} << 20;

// A row of the dense permutation table, with the interface of SymmetryGroup::Element.
struct TableRow {
  const Site* row;
  Site operator[](std::size_t s) const { return row[s]; }
};

// stab_min of the image under an element: the pair class of (s, t) less its base, for the element
// that pair_classes_from(s) uses.
template <class Map>
struct StabMinOfImage {
  Map to_rep;
  const Site* stab_min;
  Site operator[](std::size_t t) const { return stab_min[to_rep[t]]; }
};

// Calls f with the pair classes (less their base) of (s, .) as an indexable map: a row of the
// precomputed table, or the stabilizer minima of the image under a table row or a view.
template <class F>
void visit_pair_classes(const Canonicalizer& c, Site s, const SymmetryGroup::PairClassRow& row, F&& f) {
  const RowTables& tables = c.row_tables();
  if (!tables.pair_class_rows.empty()) f(TableRow{tables.pair_class_rows.data() + static_cast<std::size_t>(s) * c.n_sites()});
  else if (row.to_rep.group == nullptr) f(StabMinOfImage<TableRow>{TableRow{row.to_rep.row}, row.stab_min});
  else f(StabMinOfImage<SymmetryGroup::Element>{row.to_rep, row.stab_min});
}

// Calls f with element g as a TableRow when the group keeps a dense table, else as a view, so
// hot loops are compiled once for each without a branch per site.
template <class F>
void visit_element(const SymmetryGroup& G, std::size_t g, F&& f) {
  const SymmetryGroup::Element e = G.element(g);
  if (e.group == nullptr) f(TableRow{e.row});
  else f(e);
}

// Sizes w for c (once per canonicalizer) and empties it.
void reset(const Canonicalizer& c, Workspace& w) {
  const std::size_t stride = c.n_kinds() + 1;
  const std::size_t n = c.n_sites();
  if (w.counts.size() != stride || w.sized_for != n) {
    w.sized_for = n;
    w.counts.assign(stride, 0);
    w.kind_of_rank.assign(stride, 0);
    w.kind_start.assign(stride + 1, 0);
    w.direct = stride * n <= kMaxBucketEntries;
    w.by_kind.assign(w.direct ? stride * n : n, 0);
    w.sites.assign(w.direct ? 0 : n, 0);
    w.kinds.assign(w.direct ? 0 : n, 0);
    if (w.direct)
      for (std::size_t k = 0; k <= stride; ++k) w.kind_start[k] = static_cast<std::uint32_t>(k * n);
  }
  w.nd = 0;
  std::fill(w.counts.begin(), w.counts.end(), 0U);
}

inline void add_defect(Workspace& w, std::size_t site, std::uint8_t kind) {
  if (w.direct) {
    w.by_kind[w.kind_start[kind] + w.counts[kind]] = static_cast<Site>(site);
  } else {
    w.sites[w.nd] = static_cast<Site>(site);
    w.kinds[w.nd] = kind;
  }
  ++w.nd;
  ++w.counts[kind];
}

void write_empty(const Canonicalizer& c, std::uint8_t* canonical, std::uint8_t* key, std::int64_t* orbit,
                 std::int64_t* op) {
  if (canonical) std::memset(canonical, 0, c.n_sites());
  if (key) std::memset(key, 0, c.key_bytes());
  if (orbit) *orbit = 1;
  if (op) *op = static_cast<std::int64_t>(c.group().identity());
}

// Ranks the present kinds by (count, kind) into w.kind_of_rank, an order every image
// shares; returns the number of present kinds (rank 0 is the anchor kind).
std::uint32_t rank_present_kinds(Workspace& w, std::size_t n_kinds) {
  std::uint32_t n_present = 0;
  for (std::uint32_t k = 1; k <= n_kinds; ++k)
    if (w.counts[k]) w.kind_of_rank[n_present++] = static_cast<std::uint8_t>(k);
  for (std::uint32_t i = 1; i < n_present; ++i) {  // insertion sort by count (kinds already ascend): few kinds
    const std::uint8_t k = w.kind_of_rank[i];
    std::uint32_t j = i;
    for (; j > 0 && w.counts[w.kind_of_rank[j - 1]] > w.counts[k]; --j) w.kind_of_rank[j] = w.kind_of_rank[j - 1];
    w.kind_of_rank[j] = k;
  }
  return n_present;
}

// Groups the defect sites by kind into w.by_kind (kind k at kind_start[k]..+counts[k]), keeping
// their order within a kind (already so when extraction put them there directly).
void group_sites_by_kind(Workspace& w, std::size_t n_kinds) {
  if (w.direct) return;
  w.kind_start[0] = 0;
  for (std::size_t k = 0; k <= n_kinds; ++k) w.kind_start[k + 1] = w.kind_start[k] + w.counts[k];
  std::uint32_t* fill = w.kind_start.data();  // advanced to the ends, then shifted back
  for (std::size_t e = 0; e < w.nd; ++e) w.by_kind[fill[w.kinds[e]]++] = w.sites[e];
  for (std::size_t k = n_kinds + 1; k > 0; --k) w.kind_start[k] = w.kind_start[k - 1];
  w.kind_start[0] = 0;
}

const Site* kind_begin(const Workspace& w, std::size_t k) { return w.by_kind.data() + w.kind_start[k]; }
const Site* kind_end(const Workspace& w, std::size_t k) { return kind_begin(w, k) + w.counts[k]; }

// Anchor candidates: the defects of the anchor kind on the orbit with the smallest representative m*
// (into w.anchors, in their order).
void collect_anchors(const SymmetryGroup& G, Workspace& w, std::uint8_t anchor_kind) {
  Site m_star = std::numeric_limits<Site>::max();
  for (const Site* t = kind_begin(w, anchor_kind); t != kind_end(w, anchor_kind); ++t)
    m_star = std::min(m_star, G.orbit_rep(*t));
  w.anchors.clear();
  for (const Site* t = kind_begin(w, anchor_kind); t != kind_end(w, anchor_kind); ++t)
    if (G.orbit_rep(*t) == m_star) w.anchors.push_back(*t);
}

// Environment signature of anchor d: the sum over the other defects e of
// mix64(pair_class(d, e) * (n_kinds + 1) + kind(e)), wrapping modulo 2^64; pc maps e's site to its
// pair class less base.
template <class PairClasses>
std::uint64_t environment_signature(const Canonicalizer& c, const Workspace& w, const PairClasses& pc,
                                    std::uint32_t base, Site d, std::uint8_t anchor_kind) {
  const RowTables& tables = c.row_tables();
  const std::size_t stride = c.n_kinds() + 1;
  std::uint64_t sig = 0;
  if (!tables.signature_terms.empty()) {
    for (std::size_t k = 1; k <= c.n_kinds(); ++k) {
      const std::uint64_t* terms = tables.signature_terms.data() + k * tables.n_pair_classes + base;
      for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) sig += terms[pc[*t]];
    }
    // d itself was summed too: take its term back out (exactly, modulo 2^64)
    return sig - tables.signature_terms[anchor_kind * tables.n_pair_classes + base + pc[d]];
  }
  for (std::size_t k = 1; k <= c.n_kinds(); ++k)
    for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t)
      if (*t != d) sig += mix64(static_cast<std::uint64_t>(static_cast<std::uint32_t>(base + pc[*t])) * stride + k);
  return sig;
}

// environment_signature of four anchors at once from the tables (all anchors share one orbit,
// hence one base): each defect's site is read once for all four.
void environment_signatures_of_four(const Canonicalizer& c, const Workspace& w, const Site* anchors,
                                    std::uint32_t base, std::uint8_t anchor_kind, std::uint64_t* out) {
  const RowTables& tables = c.row_tables();
  const std::size_t n = c.n_sites();
  const Site* r0 = tables.pair_class_rows.data() + anchors[0] * n;
  const Site* r1 = tables.pair_class_rows.data() + anchors[1] * n;
  const Site* r2 = tables.pair_class_rows.data() + anchors[2] * n;
  const Site* r3 = tables.pair_class_rows.data() + anchors[3] * n;
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (std::size_t k = 1; k <= c.n_kinds(); ++k) {
    const std::uint64_t* terms = tables.signature_terms.data() + k * tables.n_pair_classes + base;
    for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) {
      const Site u = *t;
      s0 += terms[r0[u]];
      s1 += terms[r1[u]];
      s2 += terms[r2[u]];
      s3 += terms[r3[u]];
    }
  }
  const std::uint64_t* self = tables.signature_terms.data() + anchor_kind * tables.n_pair_classes + base;
  out[0] = s0 - self[r0[anchors[0]]];
  out[1] = s1 - self[r1[anchors[1]]];
  out[2] = s2 - self[r2[anchors[2]]];
  out[3] = s3 - self[r3[anchors[3]]];
}

// Keeps, among many anchors, those with the smallest invariant environment signature.
void keep_anchors_of_smallest_environment(const Canonicalizer& c, Workspace& w, std::uint8_t anchor_kind) {
  if (w.anchors.size() <= kSignatureMinAnchors) return;
  const SymmetryGroup& G = c.group();
  const RowTables& tables = c.row_tables();
  w.signatures.resize(w.anchors.size());
  std::size_t a = 0;
  if (!tables.pair_class_rows.empty() && !tables.signature_terms.empty()) {
    const std::uint32_t base = G.pair_classes_from(w.anchors[0]).base;
    const std::size_t n_anchors = w.anchors.size();
    for (; a < n_anchors; a += 4) {
      Site four[4];
      std::uint64_t sigs[4];
      for (std::size_t i = 0; i < 4; ++i) four[i] = w.anchors[std::min(a + i, n_anchors - 1)];  // the last repeats
      environment_signatures_of_four(c, w, four, base, anchor_kind, sigs);
      for (std::size_t i = 0; i < 4 && a + i < n_anchors; ++i) w.signatures[a + i] = sigs[i];
    }
  }
  for (; a < w.anchors.size(); ++a) {
    const Site d = w.anchors[a];
    const auto row = G.pair_classes_from(d);
    visit_pair_classes(c, d, row, [&](const auto& pc) {
      w.signatures[a] = environment_signature(c, w, pc, row.base, d, anchor_kind);
    });
  }
  const std::uint64_t best_sig = *std::min_element(w.signatures.begin(), w.signatures.end());
  std::size_t kept = 0;
  for (std::size_t i = 0; i < w.anchors.size(); ++i)
    if (w.signatures[i] == best_sig) w.anchors[kept++] = w.anchors[i];
  w.anchors.resize(kept);
}

// Second anchor: among the defects paired with a kept anchor, those with the smallest invariant
// (kind rank, pair class) go into w.pairs: the anchor kind's other defects when it has several,
// else the defects of rank 1. A candidate must also bring the partner to the smallest site t* that
// the stabilizer of m* can bring it to; returns t* (0 for a single defect).
Site pair_anchors_with_partners(const Canonicalizer& c, Workspace& w, std::uint8_t anchor_kind) {
  const SymmetryGroup& G = c.group();
  w.pairs.clear();
  if (w.nd == 1) {
    w.pairs.push_back({w.anchors[0], w.anchors[0]});
    return 0;
  }
  const std::uint8_t partner_kind = w.counts[anchor_kind] >= 2 ? anchor_kind : w.kind_of_rank[1];
  // The anchors share the orbit of m*, hence the base of their pair classes: compare what is above
  // it, stab_min(m*, g_d(partner)), whose smallest value is t* itself.
  Site best = std::numeric_limits<Site>::max();
  for (const Site d : w.anchors) {
    visit_pair_classes(c, d, G.pair_classes_from(d), [&](const auto& pcs) {
      for (const Site* t = kind_begin(w, partner_kind); t != kind_end(w, partner_kind); ++t) {
        if (*t == d) continue;
        const Site pc = pcs[*t];
        if (pc < best) {
          best = pc;
          w.pairs.clear();
        }
        if (pc == best) w.pairs.push_back({d, *t});
      }
    });
  }
  return best;
}

struct SmallestImage {
  std::size_t g = 0;     // first candidate reaching the smallest image
  std::size_t ties = 0;  // candidates reaching it: the order of the placement's stabilizer
};

// Images of the kind-rank segments as bitsets of sites, n_words words per segment.
struct BitsetImages {
  std::size_t n_words;
  /// Writes segment r of the image under p into images (n_present x n_words words).
  template <class Map>
  void build(const Map& p, const Workspace& w, std::uint32_t r, std::uint64_t* images) const {
    const std::uint8_t k = w.kind_of_rank[r];
    std::uint64_t* words = images + r * n_words;
    std::fill(words, words + n_words, 0);
    for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) {
      const Site u = p[*t];
      words[u >> 6] |= std::uint64_t{1} << (u & 63U);
    }
  }
  /// -1, 0 or 1 as segment r of a precedes, equals or follows that of b.
  int compare(std::uint32_t r, const std::uint64_t* a, const std::uint64_t* b) const {
    a += r * n_words;
    b += r * n_words;
    for (std::size_t i = 0; i < n_words; ++i) {
      const std::uint64_t diff = a[i] ^ b[i];
      if (diff != 0) return (a[i] & diff & (0 - diff)) != 0 ? -1 : 1;  // who holds the smallest differing site
    }
    return 0;
  }
};

// Images of the kind-rank segments as sorted site lists, segment r at offsets[r]..offsets[r+1]
// (few defects on a large supercell, where a bitset would be mostly empty words).
struct SortedImages {
  const std::uint32_t* offsets;
  template <class Map>
  void build(const Map& p, const Workspace& w, std::uint32_t r, std::uint32_t* images) const {
    const std::size_t begin = offsets[r];
    const std::size_t end = offsets[r + 1];
    const Site* t = kind_begin(w, w.kind_of_rank[r]);
    if (end - begin <= 32) {
      for (std::size_t e = begin; e < end; ++e, ++t) {
        const std::uint32_t v = p[*t];
        std::size_t i = e;
        while (i > begin && images[i - 1] > v) {
          images[i] = images[i - 1];
          --i;
        }
        images[i] = v;
      }
    } else {
      for (std::size_t e = begin; e < end; ++e, ++t) images[e] = p[*t];
      std::sort(images + begin, images + end);
    }
  }
  int compare(std::uint32_t r, const std::uint32_t* a, const std::uint32_t* b) const {
    for (std::size_t e = offsets[r]; e < offsets[r + 1]; ++e)
      if (a[e] != b[e]) return a[e] < b[e] ? -1 : 1;
    return 0;
  }
};

// Smallest image over the candidate elements: for each (anchor, partner) pair, the elements of the
// anchor's coset that bring the partner to t*. Images are built segment by segment only as far as
// a comparison needs them: a lone candidate builds nothing, and most stop at the first segment.
template <class Images, class Word>
SmallestImage smallest_image(const SymmetryGroup& G, const Workspace& w, std::uint32_t n_present, Site t_star,
                             std::uint32_t first_compared, const Images& images, std::vector<Word>& current,
                             std::vector<Word>& best) {
  SmallestImage result;
  bool have_best = false;
  std::uint32_t best_built = 0;  // segments of the best image written into best
  auto consider = [&](std::uint32_t g, const auto& p) {
    if (!have_best) {
      result = {g, 1};
      have_best = true;
      best_built = 0;
      return;
    }
    int cmp = 0;
    std::uint32_t r = first_compared;
    for (; r < n_present && cmp == 0; ++r) {
      images.build(p, w, r, current.data());
      if (best_built <= r) {
        visit_element(G, result.g, [&](const auto& pb) { images.build(pb, w, r, best.data()); });
        best_built = r + 1;
      }
      cmp = images.compare(r, current.data(), best.data());
    }
    if (cmp < 0) {
      current.swap(best);
      result = {g, 1};
      best_built = r;
    } else if (cmp == 0) {
      ++result.ties;
    }
  };
  const Site* table = G.table();
  const std::size_t n = G.n_sites();
  const bool single = w.nd == 1;
  for (const auto& pr : w.pairs) {
    const Site partner = pr.second;
    const std::uint32_t* end = G.coset_end(pr.first);
    for (const std::uint32_t* g = G.coset_begin(pr.first); g != end; ++g) {
      if (table != nullptr) {
        const Site* row = table + static_cast<std::size_t>(*g) * n;
        if (single || row[partner] == t_star) consider(*g, TableRow{row});
      } else {
        const SymmetryGroup::Element p = G.element(*g);
        if (single || p[partner] == t_star) consider(*g, p);
      }
    }
  }
  return result;
}

// Writes the placement moved by p as a dense row (n_sites bytes).
template <class Map>
void write_canonical(const Canonicalizer& c, const Workspace& w, const Map& p, std::uint8_t* canonical) {
  std::memset(canonical, 0, c.n_sites());
  for (std::size_t k = 1; k <= c.n_kinds(); ++k)
    for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) canonical[p[*t]] = static_cast<std::uint8_t>(k);
}

// Writes the key of the placement moved by p: each site's local code in bits_per_site bits,
// site s at bit s * bits_per_site, least significant bit first.
template <class Map>
void write_key(const Canonicalizer& c, const Workspace& w, const Map& p, std::uint8_t* key) {
  const std::size_t bps = c.bits_per_site();
  const std::size_t n_bytes = c.key_bytes();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (8 % bps == 0 && n_bytes <= kKeyWordBytes) {  // a site's bits never straddle two words
    std::uint64_t words[kKeyWordBytes / 8];
    std::fill(words, words + (n_bytes + 7) / 8, std::uint64_t{0});
    for (std::size_t k = 1; k <= c.n_kinds(); ++k) {
      const std::uint64_t code = c.local_code(static_cast<std::uint8_t>(k));
      for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) {
        const std::size_t bit = static_cast<std::size_t>(p[*t]) * bps;
        words[bit >> 6] |= code << (bit & 63U);
      }
    }
    std::size_t i = 0;
    for (; i + 8 <= n_bytes; i += 8) std::memcpy(key + i, words + i / 8, 8);  // fixed-size copies stay inline
    if (i < n_bytes) std::memcpy(key + i, words + i / 8, n_bytes - i);
    return;
  }
#endif
  std::memset(key, 0, n_bytes);
  for (std::size_t k = 1; k <= c.n_kinds(); ++k) {
    const std::size_t code = c.local_code(static_cast<std::uint8_t>(k));
    for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) {
      const std::size_t bit = static_cast<std::size_t>(p[*t]) * bps;
      for (std::size_t b = 0; b < bps; ++b)
        if (code >> b & 1U) key[(bit + b) >> 3] = static_cast<std::uint8_t>(key[(bit + b) >> 3] | (1U << ((bit + b) & 7U)));
    }
  }
}

// extract_dense for a workspace in direct mode: one write cursor per kind.
bool extract_dense_into_buckets(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::size_t* bad_site) {
  const std::size_t n = c.n_sites();
  const std::size_t stride = c.n_kinds() + 1;
  Site* cursor[256];
  for (std::size_t k = 0; k < stride; ++k) cursor[k] = w.by_kind.data() + w.kind_start[k];
  auto take = [&](std::size_t u) {  // false, with *bad_site set, when the code does not fit the site
    const std::uint8_t code = x[u];
    if (!c.allowed(u, code)) {
      if (bad_site) *bad_site = u;
      return false;
    }
    *cursor[code]++ = static_cast<Site>(u);
    return true;
  };
  std::size_t s = 0;
#if defined(DEFECTSPACE_SSE2)
  const __m128i zero = _mm_setzero_si128();
  auto nonzero_bytes = [&](std::size_t at) {  // bit i set when x[at + i] != 0, i < 16
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + at));
    return ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero))) & 0xFFFFU;
  };
  for (; s + 64 <= n; s += 64) {  // sparse rows: most 64-byte blocks hold no defect
    const __m128i* p = reinterpret_cast<const __m128i*>(x + s);
    const __m128i any = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(p), _mm_loadu_si128(p + 1)),
                                     _mm_or_si128(_mm_loadu_si128(p + 2), _mm_loadu_si128(p + 3)));
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(any, zero)) == 0xFFFF) continue;
    for (std::size_t q = 0; q < 64; q += 16)
      for (unsigned mask = nonzero_bytes(s + q); mask != 0; mask &= mask - 1)
        if (!take(s + q + ctz64(mask))) return false;
  }
  for (; s + 16 <= n; s += 16)
    for (unsigned mask = nonzero_bytes(s); mask != 0; mask &= mask - 1)
      if (!take(s + ctz64(mask))) return false;
#endif
  for (; s < n; ++s)
    if (x[s] != 0 && !take(s)) return false;
  for (std::size_t k = 1; k < stride; ++k) {
    w.counts[k] = static_cast<std::uint32_t>(cursor[k] - (w.by_kind.data() + w.kind_start[k]));
    w.nd += w.counts[k];
  }
  return true;
}

}  // namespace

std::shared_ptr<const RowTables> make_row_tables(const SymmetryGroup& G, std::size_t n_kinds) {
  auto tables = std::make_shared<RowTables>();
  const std::size_t n = G.n_sites();
  std::size_t n_reps = 0;
  for (std::size_t s = 0; s < n; ++s) n_reps += G.orbit_rep(s) == s;
  tables->n_pair_classes = n_reps * n;
  if (n * n * sizeof(Site) <= kPairClassTableBytes) {
    tables->pair_class_rows.resize(n * n);
    for (std::size_t s = 0; s < n; ++s) {
      const auto row = G.pair_classes_from(s);
      for (std::size_t t = 0; t < n; ++t) tables->pair_class_rows[s * n + t] = static_cast<Site>(row.of(t) - row.base);
    }
  }
  const std::size_t stride = n_kinds + 1;
  if (stride * tables->n_pair_classes * sizeof(std::uint64_t) > kSignatureTableBytes) return tables;
  tables->signature_terms.assign(stride * tables->n_pair_classes, 0);
  for (std::size_t pc = 0; pc < tables->n_pair_classes; ++pc)
    for (std::size_t k = 1; k <= n_kinds; ++k)
      tables->signature_terms[k * tables->n_pair_classes + pc] = mix64(static_cast<std::uint64_t>(pc) * stride + k);
  return tables;
}

bool extract_dense(const Canonicalizer& c, const std::uint8_t* x, Workspace& w, std::size_t* bad_site) {
  const std::size_t n = c.n_sites();
  reset(c, w);
  if (w.direct) return extract_dense_into_buckets(c, x, w, bad_site);
  // Host atoms are skipped sixteen (SSE2) or eight bytes at a time.
  std::size_t s = 0;
#if defined(DEFECTSPACE_SSE2)
  const __m128i zero = _mm_setzero_si128();
  for (; s + 16 <= n; s += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + s));
    unsigned mask = ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero))) & 0xFFFFU;
    while (mask != 0) {
      const std::size_t u = s + ctz64(mask);
      mask &= mask - 1;
      if (!c.allowed(u, x[u])) {
        if (bad_site) *bad_site = u;
        return false;
      }
      add_defect(w, u, x[u]);
    }
  }
#endif
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
  if (w.direct) {
    for (std::size_t k = 1; k <= c.n_kinds(); ++k)
      for (const Site* t = kind_begin(w, k); t != kind_end(w, k); ++t) w.seen[*t] = 0;
  } else {
    for (std::size_t e = 0; e < w.nd; ++e) w.seen[w.sites[e]] = 0;
  }
  return ok;
}

void canonicalize_extracted(const Canonicalizer& c, Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                            std::int64_t* orbit, std::int64_t* op) {
  const SymmetryGroup& G = c.group();
  if (w.nd == 0) {
    write_empty(c, canonical, key, orbit, op);
    return;
  }
  const std::uint32_t n_present = rank_present_kinds(w, c.n_kinds());
  const std::uint8_t anchor_kind = w.kind_of_rank[0];
  group_sites_by_kind(w, c.n_kinds());
  collect_anchors(G, w, anchor_kind);
  keep_anchors_of_smallest_environment(c, w, anchor_kind);
  const Site t_star = pair_anchors_with_partners(c, w, anchor_kind);
  // Every candidate brings the anchor to m* and the partner to t*: when they are all the anchor
  // kind has, its segment is the same under every candidate and is not compared.
  const std::uint32_t anchor_count = w.counts[anchor_kind];
  const std::uint32_t first_compared = anchor_count == 1 || (anchor_count == 2 && w.nd > 1) ? 1 : 0;
  SmallestImage best;
  const std::size_t n_words = (c.n_sites() + 63) / 64;
  if (n_words <= kMaxBitsetWords && w.nd >= kMinDefectsPerWordForBitsets * n_words) {
    w.current_bits.resize(n_present * n_words);
    w.best_bits.resize(n_present * n_words);
    best = smallest_image(G, w, n_present, t_star, first_compared, BitsetImages{n_words}, w.current_bits,
                          w.best_bits);
  } else {
    std::uint32_t offsets[257];
    offsets[0] = 0;
    for (std::uint32_t r = 0; r < n_present; ++r) offsets[r + 1] = offsets[r] + w.counts[w.kind_of_rank[r]];
    w.current.resize(w.nd);
    w.best.resize(w.nd);
    best = smallest_image(G, w, n_present, t_star, first_compared, SortedImages{offsets}, w.current, w.best);
  }
  visit_element(G, best.g, [&](const auto& p) {
    if (canonical) write_canonical(c, w, p, canonical);
    if (key) write_key(c, w, p, key);
  });
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
