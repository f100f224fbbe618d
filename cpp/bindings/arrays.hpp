#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace defectspace::bindings {
namespace py = pybind11;

/// Checks dtype and shape exactly (no silent casts), then returns a C-contiguous view or copy.
/// shape entries < 0 accept any length along that axis.
template <class T>
py::array_t<T, py::array::c_style> checked(const py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::value_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                          ", got " + std::string(py::str(a.dtype())));
  }
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == shape[i];
  if (!ok) {
    std::string want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + (shape[i] < 0 ? std::string("n") : std::to_string(shape[i]));
    want += shape.size() == 1 ? ",)" : ")";
    std::string got = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    got += a.ndim() == 1 ? ",)" : ")";
    throw py::value_error(std::string(name) + ": expected shape " + want + ", got " + got);
  }
  return py::array_t<T, py::array::c_style>::ensure(a);
}

}  // namespace defectspace::bindings
