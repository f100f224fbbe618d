#pragma once
#include <pybind11/pybind11.h>

#include <new>
#include <string>

#include "defectspace/group.hpp"

namespace defectspace::bindings {
namespace py = pybind11;

/// Reaches Python as MemoryError with its message (pybind11 has no builtin exception for it).
class memory_error : public py::builtin_exception {
 public:
  using py::builtin_exception::builtin_exception;
  /// Sets MemoryError(what()) as the Python error.
  void set_error() const override { py::set_error(PyExc_MemoryError, what()); }
};

/// "the 100x100 supercell" for a group built from point operations, else "the 300-site group".
inline std::string describe_supercell(const SymmetryGroup& g) {
  const auto [n1, n2] = g.supercell();
  if (n1 == 0) return "the " + std::to_string(g.n_sites()) + "-site group";
  return "the " + std::to_string(n1) + "x" + std::to_string(n2) + " supercell";
}

/// Runs fn; an allocation failure in C++ (std::bad_alloc) or numpy (MemoryError) becomes a
/// MemoryError saying "not enough memory " + purpose, instead of a bare "std::bad_alloc".
template <class Fn>
auto with_memory_message(const std::string& purpose, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    throw memory_error("not enough memory " + purpose);
  } catch (py::error_already_set& e) {
    if (e.matches(PyExc_MemoryError)) throw memory_error("not enough memory " + purpose + " (" + e.what() + ")");
    throw;
  }
}

}  // namespace defectspace::bindings
