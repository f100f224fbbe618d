#include "arrays.hpp"
#include "defectspace/enumerate.hpp"
#include "errors.hpp"

namespace py = pybind11;
using defectspace::Canonicalizer;
using defectspace::bindings::checked;
using defectspace::bindings::describe_supercell;
using defectspace::bindings::with_memory_message;

namespace {
py::ssize_t ssize(std::size_t n) { return static_cast<py::ssize_t>(n); }
}  // namespace

void bind_enumerate(py::module_& m) {
  m.def(
      "enumerate_distinct",
      [](const Canonicalizer& c, const py::array& counts, std::size_t n_threads) {
        const auto k = checked<std::int64_t>(counts, {ssize(c.n_kinds() + 1)}, "counts");
        std::string counts_text;
        for (std::size_t i = 1; i <= c.n_kinds(); ++i) counts_text += (i > 1 ? ", " : "") + std::to_string(k.data()[i]);
        const std::string purpose = "to enumerate the distinct placements with counts [" + counts_text + "] on " +
                                    describe_supercell(c.group()) + "; ask for fewer defects or a smaller supercell";
        return with_memory_message(purpose, [&] {
          defectspace::Enumeration e;
          {
            py::gil_scoped_release release;
            e = defectspace::enumerate_distinct(c, k.data(), n_threads);
          }
          py::array_t<std::uint8_t> states({ssize(e.orbit.size()), ssize(c.n_sites())});
          std::copy(e.states.begin(), e.states.end(), states.mutable_data());
          py::array_t<std::int64_t> orbit(ssize(e.orbit.size()));
          std::copy(e.orbit.begin(), e.orbit.end(), orbit.mutable_data());
          return py::make_tuple(states, orbit);
        });
      },
      py::arg("canonicalizer"), py::arg("counts"), py::arg("n_threads") = 0,
      "All distinct placements with counts[k] defects of kind k (counts[0] ignored): (canonical states, orbit sizes).");
  m.def(
      "sample_uniform",
      [](const Canonicalizer& c, const py::array& counts, std::size_t n, std::uint64_t seed, std::size_t n_threads) {
        const auto k = checked<std::int64_t>(counts, {ssize(c.n_kinds() + 1)}, "counts");
        py::array_t<std::uint8_t> out({ssize(n), ssize(c.n_sites())});
        {
          auto* po = out.mutable_data();
          py::gil_scoped_release release;
          defectspace::sample_uniform(c, k.data(), n, seed, po, n_threads);
        }
        return out;
      },
      py::arg("canonicalizer"), py::arg("counts"), py::arg("n"), py::arg("seed"), py::arg("n_threads") = 0);
  m.def(
      "random_images",
      [](const Canonicalizer& c, const py::array& states, std::uint64_t seed, std::size_t n_threads) {
        const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
        const auto n = static_cast<std::size_t>(x.shape(0));
        py::array_t<std::uint8_t> out({ssize(n), ssize(c.n_sites())});
        py::array_t<std::int64_t> ops(ssize(n));
        {
          auto* po = out.mutable_data();
          auto* pg = ops.mutable_data();
          py::gil_scoped_release release;
          defectspace::random_images(c, x.data(), n, seed, po, pg, n_threads);
        }
        return py::make_tuple(out, ops);
      },
      py::arg("canonicalizer"), py::arg("states"), py::arg("seed"), py::arg("n_threads") = 0);
  m.def(
      "negatives",
      [](const Canonicalizer& c, const py::array& states, const py::array& neighbors, double hard_fraction,
         std::size_t max_tries, std::uint64_t seed, std::size_t n_threads) {
        const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
        const auto nb = checked<std::int32_t>(neighbors, {ssize(c.n_sites()), -1}, "neighbors");
        const auto n = static_cast<std::size_t>(x.shape(0));
        py::array_t<std::uint8_t> out({ssize(n), ssize(c.n_sites())});
        py::array_t<std::int8_t> kind(ssize(n));
        {
          auto* po = out.mutable_data();
          auto* pk = kind.mutable_data();
          py::gil_scoped_release release;
          defectspace::negatives(c, x.data(), n, nb.data(), static_cast<std::size_t>(nb.shape(1)), hard_fraction,
                                 max_tries, seed, po, pk, n_threads);
        }
        return py::make_tuple(out, kind);
      },
      py::arg("canonicalizer"), py::arg("states"), py::arg("neighbors"), py::arg("hard_fraction"),
      py::arg("max_tries"), py::arg("seed"), py::arg("n_threads") = 0,
      "Returns (negatives (n, n_sites) uint8, kind (n,) int8: 1 hard, 0 random, -1 none exists).");
}
