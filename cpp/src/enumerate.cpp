#include "defectspace/enumerate.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "defectspace/detail/canonical_row.hpp"
#include "defectspace/detail/sites_by_type.hpp"
#include "defectspace/parallel.hpp"
#include "defectspace/random.hpp"

namespace defectspace {
namespace {

struct Slot {
  std::uint8_t kind;
  bool first_of_kind;
};

// Throws std::invalid_argument on a negative count or more defects on a host type than it has sites.
void check_counts_fit(const Canonicalizer& canon, const std::int64_t* counts,
                      const std::vector<std::vector<Site>>& by_type) {
  std::vector<std::int64_t> need(by_type.size(), 0);
  for (std::size_t k = 1; k <= canon.n_kinds(); ++k) {
    if (counts[k] < 0) throw std::invalid_argument("defect kind " + std::to_string(k) + " has negative count " + std::to_string(counts[k]));
    if (counts[k] > 0) need[detail::type_of_kind(canon, static_cast<std::uint8_t>(k))] += counts[k];
  }
  for (std::size_t t = 0; t < by_type.size(); ++t)
    if (need[t] > static_cast<std::int64_t>(by_type[t].size()))
      throw std::invalid_argument(std::to_string(need[t]) + " defects asked for on sublattice type " + std::to_string(t) +
                                  ", which has only " + std::to_string(by_type[t].size()) + " sites");
}

class Enumerator {
 public:
  Enumerator(const Canonicalizer& canon, std::vector<Slot> slots, std::vector<std::vector<Site>> by_type,
             std::vector<std::size_t> slot_type, std::uint8_t anchor_kind, Site rep)
      : canon_(canon), slots_(std::move(slots)), by_type_(std::move(by_type)), slot_type_(std::move(slot_type)),
        anchor_kind_(anchor_kind), rep_(rep), state_(canon.n_sites(), 0), canonical_(canon.n_sites()) {}

  // Runs the search with the first free slot fixed at first_site (or no free slot).
  void run_from(std::size_t first_index, Enumeration& out) {
    state_[rep_] = anchor_kind_;
    if (slots_.empty()) {
      leaf(out);
    } else {
      const Site s = by_type_[slot_type_[0]][first_index];
      if (admissible(0, s)) {
        state_[s] = slots_[0].kind;
        recurse(1, first_index, out);
        state_[s] = 0;
      }
    }
    state_[rep_] = 0;
  }

 private:
  bool admissible(std::size_t slot, Site s) const {
    if (state_[s] != 0) return false;
    // A canonical form has no anchor-kind defect on an orbit with a smaller representative.
    if (slots_[slot].kind == anchor_kind_ && canon_.group().orbit_rep(s) < rep_) return false;
    return true;
  }

  void recurse(std::size_t slot, std::size_t prev_index, Enumeration& out) {
    if (slot == slots_.size()) {
      leaf(out);
      return;
    }
    const auto& pool = by_type_[slot_type_[slot]];
    const std::size_t start = slots_[slot].first_of_kind ? 0 : prev_index + 1;
    for (std::size_t i = start; i < pool.size(); ++i) {
      const Site s = pool[i];
      if (!admissible(slot, s)) continue;
      state_[s] = slots_[slot].kind;
      recurse(slot + 1, i, out);
      state_[s] = 0;
    }
  }

  void leaf(Enumeration& out) {
    std::int64_t orbit = 0;
    detail::canonicalize_row(canon_, state_.data(), work_, canonical_.data(), nullptr, &orbit, nullptr);
    if (std::memcmp(canonical_.data(), state_.data(), state_.size()) == 0) {
      out.states.insert(out.states.end(), state_.begin(), state_.end());
      out.orbit.push_back(orbit);
    }
  }

  const Canonicalizer& canon_;
  std::vector<Slot> slots_;
  std::vector<std::vector<Site>> by_type_;
  std::vector<std::size_t> slot_type_;
  std::uint8_t anchor_kind_;
  Site rep_;
  std::vector<std::uint8_t> state_;
  std::vector<std::uint8_t> canonical_;
  detail::Workspace work_;
};

}  // namespace

Enumeration enumerate_distinct(const Canonicalizer& canon, const std::int64_t* counts, std::size_t n_threads) {
  const std::size_t K = canon.n_kinds();
  auto by_type = detail::sites_by_type(canon.group());
  check_counts_fit(canon, counts, by_type);
  Enumeration result;
  std::uint8_t anchor = 0;
  for (std::size_t k = 1; k <= K; ++k)
    if (counts[k] > 0 && (anchor == 0 || counts[k] < counts[anchor])) anchor = static_cast<std::uint8_t>(k);
  if (anchor == 0) {  // the pristine crystal: one class
    result.states.assign(canon.n_sites(), 0);
    result.orbit.push_back(1);
    return result;
  }
  std::vector<Slot> slots;
  std::vector<std::size_t> slot_type;
  for (std::size_t k = 1; k <= K; ++k) {
    const std::int64_t c = counts[k] - (k == anchor ? 1 : 0);
    for (std::int64_t i = 0; i < c; ++i) {
      slots.push_back({static_cast<std::uint8_t>(k), i == 0});
      slot_type.push_back(detail::type_of_kind(canon, static_cast<std::uint8_t>(k)));
    }
  }
  // Tasks: (orbit representative, index of the first free slot's site) in a fixed order.
  std::vector<std::pair<Site, std::size_t>> tasks;
  const std::size_t anchor_type = detail::type_of_kind(canon, anchor);
  for (const Site r : by_type[anchor_type]) {
    if (canon.group().orbit_rep(r) != r) continue;
    if (slots.empty()) tasks.emplace_back(r, 0);
    else
      for (std::size_t i = 0; i < by_type[slot_type[0]].size(); ++i) tasks.emplace_back(r, i);
  }
  std::vector<Enumeration> parts(tasks.size());
  const std::size_t threads = resolve_threads(n_threads, tasks.size(), 1);
  parallel_for(tasks.size(), threads, [&](std::size_t begin, std::size_t end, std::size_t) {
    for (std::size_t t = begin; t < end; ++t) {
      Enumerator e(canon, slots, by_type, slot_type, anchor, tasks[t].first);
      e.run_from(tasks[t].second, parts[t]);
    }
  });
  for (auto& p : parts) {
    result.states.insert(result.states.end(), p.states.begin(), p.states.end());
    result.orbit.insert(result.orbit.end(), p.orbit.begin(), p.orbit.end());
  }
  return result;
}

void sample_uniform(const Canonicalizer& canon, const std::int64_t* counts, std::size_t n_rows, std::uint64_t seed,
                    std::uint8_t* out, std::size_t n_threads) {
  const std::size_t K = canon.n_kinds();
  const std::size_t n = canon.n_sites();
  const auto by_type = detail::sites_by_type(canon.group());
  check_counts_fit(canon, counts, by_type);
  std::vector<std::size_t> kind_type(K + 1, 0);
  for (std::size_t k = 1; k <= K; ++k)
    if (counts[k] > 0) kind_type[k] = detail::type_of_kind(canon, static_cast<std::uint8_t>(k));
  parallel_for(n_rows, resolve_threads(n_threads, n_rows), [&](std::size_t begin, std::size_t end, std::size_t) {
    std::vector<std::vector<Site>> pools;
    for (std::size_t r = begin; r < end; ++r) {
      pools = by_type;  // fresh pools: row r depends on (seed, r) alone
      Rng rng(seed, r);
      std::uint8_t* x = out + r * n;
      std::memset(x, 0, n);
      std::vector<std::size_t> used(pools.size(), 0);
      for (std::size_t k = 1; k <= K; ++k) {
        auto& pool = pools[kind_type[k]];
        std::size_t& u = used[kind_type[k]];
        for (std::int64_t c = 0; c < counts[k]; ++c, ++u) {  // partial Fisher-Yates
          const std::size_t j = u + static_cast<std::size_t>(rng.below(pool.size() - u));
          std::swap(pool[u], pool[j]);
          x[pool[u]] = static_cast<std::uint8_t>(k);
        }
      }
    }
  });
}

}  // namespace defectspace
