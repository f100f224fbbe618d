#pragma once
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace defectspace {

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
