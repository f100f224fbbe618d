#pragma once
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace defectspace {

/// Number of threads to use for n_items items when asked for n_threads (0 = all cores), giving
/// each thread at least min_per_thread items; always at least 1.
inline std::size_t resolve_threads(std::size_t n_threads, std::size_t n_items, std::size_t min_per_thread = 256) {
  std::size_t t = n_threads;
  if (t == 0) {
    t = std::thread::hardware_concurrency();
    if (t == 0) t = 1;
  }
  const std::size_t by_work = n_items / (min_per_thread ? min_per_thread : 1);
  if (by_work < t) t = by_work;
  return t < 1 ? 1 : t;
}

/// Runs fn(begin, end, thread_index) over [0, n) split into contiguous blocks on n_threads threads;
/// rethrows the first exception of any block after all threads have joined.
template <class Fn>
void parallel_for(std::size_t n, std::size_t n_threads, Fn&& fn) {
  if (n_threads <= 1 || n == 0) {
    fn(std::size_t{0}, n, std::size_t{0});
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(n_threads);
  const std::size_t block = (n + n_threads - 1) / n_threads;
  for (std::size_t t = 0; t < n_threads; ++t) {
    const std::size_t begin = t * block;
    const std::size_t end = begin + block < n ? begin + block : n;
    if (begin >= end) break;
    threads.emplace_back([&, begin, end, t] {
      try {
        fn(begin, end, t);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace defectspace
