#include <pybind11/pybind11.h>

#include "defectspace/canonical.hpp"

namespace py = pybind11;

void bind_group(py::module_& m);
void bind_canonical(py::module_& m);
void bind_enumerate(py::module_& m);
void bind_descriptors(py::module_& m);
void bind_trees(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "defectspace C++ core: symmetry groups of supercells and exact canonical forms of defect placements";
  m.attr("KEY_FORMAT_VERSION") = defectspace::kKeyFormatVersion;
  bind_group(m);
  bind_canonical(m);
  bind_enumerate(m);
  bind_descriptors(m);
  bind_trees(m);
}
