#include "defectspace/canonical.hpp"

#include "defectspace/bits.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace defectspace {
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

std::string bad_code_message(std::size_t row, std::size_t site, unsigned code, const Canonicalizer& c) {
  std::string msg = "row " + std::to_string(row) + ": site " + std::to_string(site) + " cannot hold defect code " +
                    std::to_string(code);
  if (code > c.n_kinds()) msg += " (codes are 0.." + std::to_string(c.n_kinds()) + ")";
  else msg += " (that defect kind belongs to another sublattice)";
  return msg;
}

}  // namespace

std::size_t resolve_threads(std::size_t n_threads, std::size_t n_items, std::size_t min_per_thread) {
  std::size_t t = n_threads;
  if (t == 0) {
    t = std::thread::hardware_concurrency();
    if (t == 0) t = 1;
  }
  const std::size_t by_work = n_items / (min_per_thread ? min_per_thread : 1);
  if (by_work < t) t = by_work;
  return t < 1 ? 1 : t;
}

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
    const Site* p = group_->perm(static_cast<std::size_t>(g));
    const std::uint8_t* x = states + r * n;
    std::uint8_t* y = out + r * n;
    for (std::size_t s = 0; s < n; ++s) y[p[s]] = x[s];
  }
}

bool Canonicalizer::canonicalize_row(const std::uint8_t* x, Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                                     std::int64_t* orbit, std::int64_t* op, std::size_t* bad_site) const {
  if (!extract_dense(x, w, bad_site)) return false;
  canonicalize_extracted(w, canonical, key, orbit, op);
  return true;
}

void Canonicalizer::reset_counts(Workspace& w) const {
  const std::size_t stride = n_kinds() + 1;
  if (w.counts.size() != stride) {
    w.counts.assign(stride, 0);
    w.rank.assign(stride, 0);
  }
  w.sites.clear();
  w.kinds.clear();
  std::fill(w.counts.begin(), w.counts.end(), 0U);
}

bool Canonicalizer::extract_dense(const std::uint8_t* x, Workspace& w, std::size_t* bad_site) const {
  const std::size_t n = n_sites();
  const std::size_t stride = n_kinds() + 1;
  reset_counts(w);
  // 1. Extract defects, skipping host atoms eight bytes at a time.
  std::size_t s = 0;
  for (; s + 8 <= n; s += 8) {
    std::uint64_t word;
    std::memcpy(&word, x + s, 8);
    while (word != 0) {
      const unsigned bit = ctz64(word) & ~7U;
      word &= ~(std::uint64_t{0xFF} << bit);
      const std::size_t u = s + byte_of_bit(bit);
      const std::uint8_t c = x[u];
      if (c >= stride || !allowed_table_[u * stride + c]) {
        if (bad_site) *bad_site = u;
        return false;
      }
      w.sites.push_back(static_cast<Site>(u));
      w.kinds.push_back(c);
      ++w.counts[c];
    }
  }
  for (; s < n; ++s) {
    const std::uint8_t c = x[s];
    if (c == 0) continue;
    if (c >= stride || !allowed_table_[s * stride + c]) {
      if (bad_site) *bad_site = s;
      return false;
    }
    w.sites.push_back(static_cast<Site>(s));
    w.kinds.push_back(c);
    ++w.counts[c];
  }
  return true;
}

bool Canonicalizer::extract_sparse(const std::int32_t* sites, const std::uint8_t* codes, std::size_t count, Workspace& w,
                                   std::string* error) const {
  const std::size_t n = n_sites();
  const std::size_t stride = n_kinds() + 1;
  reset_counts(w);
  if (w.seen.size() != n) w.seen.assign(n, 0);
  bool ok = true;
  for (std::size_t i = 0; i < count; ++i) {
    const std::int32_t s = sites[i];
    const std::uint8_t c = codes[i];
    if (s < 0 || static_cast<std::size_t>(s) >= n) {
      *error = "site " + std::to_string(s) + " out of range 0.." + std::to_string(n - 1);
      ok = false;
      break;
    }
    const auto u = static_cast<std::size_t>(s);
    if (c == 0 || c >= stride || !allowed_table_[u * stride + c]) {
      *error = "site " + std::to_string(s) + " cannot hold defect code " + std::to_string(c);
      ok = false;
      break;
    }
    if (w.seen[u]) {
      *error = "site " + std::to_string(s) + " is listed twice";
      ok = false;
      break;
    }
    w.seen[u] = 1;
    w.sites.push_back(static_cast<Site>(u));
    w.kinds.push_back(c);
    ++w.counts[c];
  }
  for (const Site u : w.sites) w.seen[u] = 0;
  return ok;
}

void Canonicalizer::canonicalize_extracted(Workspace& w, std::uint8_t* canonical, std::uint8_t* key,
                                           std::int64_t* orbit, std::int64_t* op) const {
  const SymmetryGroup& G = *group_;
  const std::size_t n = G.n_sites();
  const std::size_t K = n_kinds();
  const std::size_t stride = K + 1;
  const std::size_t nd = w.sites.size();
  if (nd == 0) {
    if (canonical) std::memset(canonical, 0, n);
    if (key) std::memset(key, 0, key_bytes_);
    if (orbit) *orbit = 1;
    if (op) *op = static_cast<std::int64_t>(G.identity());
    return;
  }
  // 2. Rank the present kinds by (count, code): an invariant order; rank 0 is the anchor kind.
  std::uint32_t n_present = 0;
  {
    std::uint32_t order_buf[256];
    for (std::uint32_t k = 1; k <= K; ++k)
      if (w.counts[k]) order_buf[n_present++] = k;
    std::sort(order_buf, order_buf + n_present, [&](std::uint32_t a, std::uint32_t b) {
      return w.counts[a] != w.counts[b] ? w.counts[a] < w.counts[b] : a < b;
    });
    for (std::uint32_t r = 0; r < n_present; ++r) w.rank[order_buf[r]] = r;
  }
  std::uint8_t anchor_kind = 0;
  for (std::uint32_t k = 1; k <= K; ++k)
    if (w.counts[k] && w.rank[k] == 0) anchor_kind = static_cast<std::uint8_t>(k);
  // 3. Anchors: defects of the anchor kind whose orbit representative is the smallest.
  Site m_star = std::numeric_limits<Site>::max();
  for (std::size_t d = 0; d < nd; ++d)
    if (w.kinds[d] == anchor_kind) m_star = std::min(m_star, G.orbit_rep(w.sites[d]));
  w.anchors.clear();
  for (std::size_t d = 0; d < nd; ++d)
    if (w.kinds[d] == anchor_kind && G.orbit_rep(w.sites[d]) == m_star) w.anchors.push_back(static_cast<std::uint32_t>(d));
  // 4. Keep only anchors with the smallest invariant environment signature.
  if (w.anchors.size() > kSignatureMinAnchors) {
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
  // 4b. Second anchor: among the defects paired with a kept anchor, those with the smallest
  // invariant (kind rank, pair class). A candidate must also bring one of them to the smallest
  // site t* that the stabilizer of m* can bring it to; this leaves few candidates to compare.
  w.pairs.clear();
  if (nd > 1) {
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
  } else {
    w.pairs.push_back({w.anchors[0], w.anchors[0]});
  }
  Site t_star = 0;
  if (nd > 1) {
    const auto& pr = w.pairs[0];
    t_star = G.stab_min(m_star, G.element(*G.coset_begin(w.sites[pr.first]))[w.sites[pr.second]]);
  }
  // 5. Minimum image over the candidate elements. The image of x under g is encoded as the
  // concatenation, by kind rank, of the sorted image sites of that rank's defects; images are
  // compared lexicographically segment by segment, so most candidates stop after the anchor's.
  w.seg_sites.resize(nd);
  w.seg_start.assign(n_present + 1, 0);
  for (std::size_t e = 0; e < nd; ++e) ++w.seg_start[w.rank[w.kinds[e]] + 1];
  for (std::uint32_t r = 0; r < n_present; ++r) w.seg_start[r + 1] += w.seg_start[r];
  w.fill.assign(w.seg_start.begin(), w.seg_start.end() - 1);
  for (std::size_t e = 0; e < nd; ++e) w.seg_sites[w.fill[w.rank[w.kinds[e]]]++] = w.sites[e];
  w.current.resize(nd);
  w.best.resize(nd);
  std::size_t best_g = 0;
  std::size_t ties = 0;
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
        best_g = *g;
        ties = 1;
        have_best = true;
      } else if (cmp == 0) {
        ++ties;
      }
    }
  }
  const auto pb = G.element(best_g);
  if (canonical) {
    std::memset(canonical, 0, n);
    for (std::size_t e = 0; e < nd; ++e) canonical[pb[w.sites[e]]] = w.kinds[e];
  }
  if (key) {
    std::memset(key, 0, key_bytes_);
    if (8 % bits_per_site_ == 0) {  // a site's bits never straddle two bytes
      for (std::size_t e = 0; e < nd; ++e) {
        const std::size_t bit = static_cast<std::size_t>(pb[w.sites[e]]) * bits_per_site_;
        key[bit >> 3] = static_cast<std::uint8_t>(key[bit >> 3] | (local_code_[w.kinds[e]] << (bit & 7U)));
      }
    } else {
    for (std::size_t e = 0; e < nd; ++e) {
      const std::size_t code = local_code_[w.kinds[e]];
      const std::size_t bit = static_cast<std::size_t>(pb[w.sites[e]]) * bits_per_site_;
      for (std::size_t b = 0; b < bits_per_site_; ++b)
        if (code >> b & 1U) key[(bit + b) >> 3] = static_cast<std::uint8_t>(key[(bit + b) >> 3] | (1U << ((bit + b) & 7U)));
    }
    }
  }
  if (orbit) *orbit = static_cast<std::int64_t>(G.order() / ties);
  if (op) *op = static_cast<std::int64_t>(best_g);
}

void Canonicalizer::canonicalize(const std::uint8_t* states, std::size_t n_rows, std::uint8_t* canonical,
                                 std::uint8_t* keys, std::int64_t* orbit, std::int64_t* op, std::size_t n_threads) const {
  const std::size_t n = n_sites();
  const std::size_t threads = resolve_threads(n_threads, n_rows);
  std::vector<std::size_t> bad_row(threads, std::numeric_limits<std::size_t>::max());
  std::vector<std::size_t> bad_site(threads, 0);
  parallel_for(n_rows, threads, [&](std::size_t begin, std::size_t end, std::size_t t) {
    Workspace w;
    for (std::size_t r = begin; r < end; ++r) {
      std::size_t site = 0;
      const bool ok = canonicalize_row(states + r * n, w, canonical ? canonical + r * n : nullptr,
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
    Workspace w;
    for (std::size_t r = begin; r < end; ++r) {
      const auto b = static_cast<std::size_t>(offsets[r]);
      const auto count = static_cast<std::size_t>(offsets[r + 1]) - b;
      if (!extract_sparse(sites + b, codes + b, count, w, &why[t])) {
        bad_row[t] = r;
        return;
      }
      canonicalize_extracted(w, nullptr, keys ? keys + r * key_bytes_ : nullptr, orbit ? orbit + r : nullptr,
                             op ? op + r : nullptr);
    }
  });
  for (std::size_t t = 0; t < threads; ++t)
    if (bad_row[t] != std::numeric_limits<std::size_t>::max())
      throw std::invalid_argument("row " + std::to_string(bad_row[t]) + ": " + why[t]);
}

}  // namespace defectspace
