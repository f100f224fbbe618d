#include <algorithm>

#include "arrays.hpp"
#include "defectspace/descriptors.hpp"

namespace py = pybind11;
using defectspace::bindings::checked;

void bind_descriptors(py::module_& m) {
  m.def(
      "defect_pair_histogram",
      [](const py::array& states, const py::array& shell, const py::array& feature, const py::array& damp,
         std::size_t n_threads) {
        const auto f = checked<std::int32_t>(feature, {-1, -1, -1}, "feature");
        const auto n_codes = f.shape(0);
        const auto n_shells = f.shape(2);
        if (f.shape(1) != n_codes) throw py::value_error("feature: expected shape (n_codes, n_codes, n_shells)");
        const auto sh = checked<std::int32_t>(shell, {-1, -1}, "shell");
        const auto n_sites = sh.shape(0);
        if (sh.shape(1) != n_sites) throw py::value_error("shell: expected a square (n_sites, n_sites) table");
        const auto x = checked<std::uint8_t>(states, {-1, n_sites}, "states");
        const auto w = checked<double>(damp, {-1, -1}, "damp");
        const auto n = x.shape(0);
        const auto n_count = w.shape(0);
        const auto n_out = n_count + w.shape(1);
        py::array_t<double> out({n, n_out});
        std::fill(out.mutable_data(), out.mutable_data() + out.size(), 0.0);
        {
          auto* po = out.mutable_data();
          py::gil_scoped_release release;  // std::invalid_argument reaches Python as ValueError
          defectspace::defect_pair_histogram(x.data(), static_cast<std::size_t>(n), static_cast<std::size_t>(n_sites),
                                             static_cast<std::size_t>(n_codes), sh.data(),
                                             static_cast<std::size_t>(n_shells), f.data(), w.data(),
                                             static_cast<std::size_t>(n_count), static_cast<std::size_t>(w.shape(1)), po,
                                             n_threads);
        }
        return out;
      },
      py::arg("states"), py::arg("shell"), py::arg("feature"), py::arg("damp"), py::arg("n_threads") = 0,
      "Kind counts, pair-feature counts and damped pair sums of dense placements (n, n_sites) uint8: float64 "
      "(n, n_count + n_damp), damp being (n_count, n_damp).");
}
