#include <cstdio>
#include <memory>

#include "arrays.hpp"
#include "defectspace/group.hpp"
#include "errors.hpp"

namespace py = pybind11;
using defectspace::SymmetryGroup;
using defectspace::bindings::checked;
using defectspace::bindings::describe_supercell;
using defectspace::bindings::with_memory_message;

void bind_group(py::module_& m) {
  py::class_<SymmetryGroup, std::shared_ptr<SymmetryGroup>>(m, "SymmetryGroup",
                                                            "A checked group of site permutations of a supercell.")
      .def_static(
          "from_point_operations",
          [](const py::array& rotations, const py::array& basis_map, const py::array& shifts, const py::array& site_types,
             int n1, int n2) {
            const auto types = checked<std::int32_t>(site_types, {-1}, "site_types");
            const py::ssize_t nb = types.shape(0);
            const auto rot = checked<std::int32_t>(rotations, {-1, 2, 2}, "rotations");
            const py::ssize_t n_ops = rot.shape(0);
            const auto bmap = checked<std::int32_t>(basis_map, {n_ops, nb}, "basis_map");
            const auto sh = checked<std::int32_t>(shifts, {n_ops, nb, 2}, "shifts");
            const std::string purpose = "to build the symmetry group of the " + std::to_string(n1) + "x" +
                                        std::to_string(n2) + " supercell";
            return with_memory_message(purpose, [&] {
              py::gil_scoped_release release;
              return std::make_shared<SymmetryGroup>(SymmetryGroup::from_point_operations(
                  rot.data(), bmap.data(), sh.data(), static_cast<std::size_t>(n_ops), static_cast<std::size_t>(nb),
                  types.data(), n1, n2));
            });
          },
          py::arg("rotations"), py::arg("basis_map"), py::arg("shifts"), py::arg("site_types"), py::arg("n1"),
          py::arg("n2"))
      .def_static(
          "from_permutations",
          [](const py::array& perms, const py::array& site_types) {
            const auto types = checked<std::int32_t>(site_types, {-1}, "site_types");
            const auto p = checked<std::int32_t>(perms, {-1, types.shape(0)}, "permutations");
            const std::string purpose = "to build a group of " + std::to_string(p.shape(0)) + " permutations of " +
                                        std::to_string(p.shape(1)) + " sites";
            return with_memory_message(purpose, [&] {
              py::gil_scoped_release release;
              return std::make_shared<SymmetryGroup>(SymmetryGroup::from_permutations(
                  p.data(), static_cast<std::size_t>(p.shape(0)), static_cast<std::size_t>(p.shape(1)), types.data()));
            });
          },
          py::arg("permutations"), py::arg("site_types"))
      .def_property_readonly("order", &SymmetryGroup::order)
      .def_property_readonly("n_sites", &SymmetryGroup::n_sites)
      .def_property_readonly("identity", &SymmetryGroup::identity)
      .def("permutations",
           [](const SymmetryGroup& g) {
             char gib[32];
             std::snprintf(gib, sizeof gib, "%.1f",
                           static_cast<double>(g.order()) * static_cast<double>(g.n_sites()) * 4.0 / (1 << 30));
             const std::string purpose = "for the permutation table of " + describe_supercell(g) + " (" +
                                         std::to_string(g.order()) + " elements x " + std::to_string(g.n_sites()) +
                                         " sites, int32: " + gib + " GiB); canonicalization and enumeration do not need it";
             return with_memory_message(purpose, [&] {
               py::array_t<std::int32_t> out({static_cast<py::ssize_t>(g.order()), static_cast<py::ssize_t>(g.n_sites())});
               auto* o = out.mutable_data();
               py::gil_scoped_release release;
               for (std::size_t e = 0; e < g.order(); ++e) {
                 const auto p = g.element(e);
                 for (std::size_t s = 0; s < g.n_sites(); ++s) o[e * g.n_sites() + s] = p[s];
               }
               return out;
             });
           },
           "Images of every site under every element, shape (order, n_sites), int32.")
      .def("element_operations",
           [](const SymmetryGroup& g) {
             py::array_t<std::int64_t> out({static_cast<py::ssize_t>(g.order()), py::ssize_t{3}});
             auto* o = out.mutable_data();
             for (std::size_t e = 0; e < g.order(); ++e) {
               const auto kab = g.element_operation(e);
               for (std::size_t i = 0; i < 3; ++i) o[3 * e + i] = kab.empty() ? -1 : static_cast<std::int64_t>(kab[i]);
             }
             return out;
           },
           "(order, 3): point operation k and translation (a, b) of each element (-1 if not built from point operations).")
      .def("site_types",
           [](const SymmetryGroup& g) {
             py::array_t<std::int32_t> out(static_cast<py::ssize_t>(g.n_sites()));
             std::copy(g.site_types().begin(), g.site_types().end(), out.mutable_data());
             return out;
           })
      .def("orbit_reps",
           [](const SymmetryGroup& g) {
             py::array_t<std::int32_t> out(static_cast<py::ssize_t>(g.n_sites()));
             for (std::size_t s = 0; s < g.n_sites(); ++s) out.mutable_data()[s] = g.orbit_rep(s);
             return out;
           },
           "Smallest site of each site's orbit, shape (n_sites,).")
      .def("inverse",
           [](const SymmetryGroup& g, std::size_t e) {
             if (e >= g.order()) throw py::index_error("element " + std::to_string(e) + " outside 0.." + std::to_string(g.order() - 1));
             return g.inverse(e);
           })
      .def("compose", &SymmetryGroup::compose, py::arg("a"), py::arg("b"), "Index of a.b (b applied first).")
      .def("pair_class",
           [](const SymmetryGroup& g, std::size_t s, std::size_t t) {
             if (s >= g.n_sites() || t >= g.n_sites()) throw py::index_error("site outside 0.." + std::to_string(g.n_sites() - 1));
             return g.pair_class(s, t);
           },
           py::arg("s"), py::arg("t"));
}
