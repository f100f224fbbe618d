#include <memory>

#include "arrays.hpp"
#include "defectspace/canonical.hpp"
#include "defectspace/keyset.hpp"

namespace py = pybind11;
using defectspace::Canonicalizer;
using defectspace::KeySet;
using defectspace::SymmetryGroup;
using defectspace::bindings::checked;

namespace {
using U8 = py::array_t<std::uint8_t>;
using I64 = py::array_t<std::int64_t>;

py::ssize_t ssize(std::size_t n) { return static_cast<py::ssize_t>(n); }
}  // namespace

void bind_canonical(py::module_& m) {
  py::class_<Canonicalizer, std::shared_ptr<Canonicalizer>>(m, "Canonicalizer",
                                                            "Exact canonical forms of dense placements (n, n_sites) uint8.")
      .def(py::init([](std::shared_ptr<SymmetryGroup> group, const py::array& kind_site_type) {
             const auto k = checked<std::int32_t>(kind_site_type, {-1}, "kind_site_type");
             return std::make_shared<Canonicalizer>(std::move(group), k.data(), static_cast<std::size_t>(k.shape(0)));
           }),
           py::arg("group"), py::arg("kind_site_type"))
      .def_property_readonly("n_sites", &Canonicalizer::n_sites)
      .def_property_readonly("n_kinds", &Canonicalizer::n_kinds)
      .def_property_readonly("key_bytes", &Canonicalizer::key_bytes)
      .def_property_readonly("bits_per_site", &Canonicalizer::bits_per_site)
      .def(
          "canonicalize",
          [](const Canonicalizer& c, const py::array& states, std::size_t n_threads) {
            const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
            const auto n = static_cast<std::size_t>(x.shape(0));
            U8 canonical({ssize(n), ssize(c.n_sites())});
            U8 keys({ssize(n), ssize(c.key_bytes())});
            I64 orbit(ssize(n));
            I64 op(ssize(n));
            {
              auto* pc = canonical.mutable_data();
              auto* pk = keys.mutable_data();
              auto* po = orbit.mutable_data();
              auto* pg = op.mutable_data();
              py::gil_scoped_release release;
              c.canonicalize(x.data(), n, pc, pk, po, pg, n_threads);
            }
            return py::make_tuple(canonical, keys, orbit, op);
          },
          py::arg("states"), py::arg("n_threads") = 0,
          "Returns (canonical (n, n_sites) uint8, keys (n, key_bytes) uint8, orbit_size (n,) int64, "
          "operation (n,) int64) where operation[r] maps row r onto its canonical form.")
      .def(
          "keys",
          [](const Canonicalizer& c, const py::array& states, std::size_t n_threads) {
            const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
            const auto n = static_cast<std::size_t>(x.shape(0));
            U8 keys({ssize(n), ssize(c.key_bytes())});
            {
              auto* pk = keys.mutable_data();
              py::gil_scoped_release release;
              c.canonicalize(x.data(), n, nullptr, pk, nullptr, nullptr, n_threads);
            }
            return keys;
          },
          py::arg("states"), py::arg("n_threads") = 0)
      .def(
          "keys_and_orbits",
          [](const Canonicalizer& c, const py::array& states, std::size_t n_threads) {
            const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
            const auto n = static_cast<std::size_t>(x.shape(0));
            U8 keys({ssize(n), ssize(c.key_bytes())});
            I64 orbit(ssize(n));
            {
              auto* pk = keys.mutable_data();
              auto* po = orbit.mutable_data();
              py::gil_scoped_release release;
              c.canonicalize(x.data(), n, nullptr, pk, po, nullptr, n_threads);
            }
            return py::make_tuple(keys, orbit);
          },
          py::arg("states"), py::arg("n_threads") = 0)
      .def(
          "canonicalize_sparse",
          [](const Canonicalizer& c, const py::array& sites, const py::array& codes, const py::array& offsets,
             std::size_t n_threads) {
            const auto off = checked<std::int64_t>(offsets, {-1}, "offsets");
            if (off.shape(0) < 1) throw py::value_error("offsets: needs n_rows + 1 entries, got 0");
            const auto st = checked<std::int32_t>(sites, {-1}, "sites");
            const auto cd = checked<std::uint8_t>(codes, {st.shape(0)}, "codes");
            const auto n = static_cast<std::size_t>(off.shape(0) - 1);
            if (off.data()[0] != 0 || off.data()[n] != st.shape(0))
              throw py::value_error("offsets must start at 0 and end at len(sites) = " + std::to_string(st.shape(0)));
            U8 keys({ssize(n), ssize(c.key_bytes())});
            I64 orbit(ssize(n));
            I64 op(ssize(n));
            {
              auto* pk = keys.mutable_data();
              auto* po = orbit.mutable_data();
              auto* pg = op.mutable_data();
              py::gil_scoped_release release;
              c.canonicalize_sparse(st.data(), cd.data(), off.data(), n, pk, po, pg, n_threads);
            }
            return py::make_tuple(keys, orbit, op);
          },
          py::arg("sites"), py::arg("codes"), py::arg("offsets"), py::arg("n_threads") = 0,
          "Sparse placements (row r = sites/codes[offsets[r]:offsets[r+1]]): (keys, orbit_size, operation).")
      .def(
          "apply",
          [](const Canonicalizer& c, const py::array& states, const py::array& ops) {
            const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
            const auto g = checked<std::int64_t>(ops, {x.shape(0)}, "operations");
            const auto n = static_cast<std::size_t>(x.shape(0));
            U8 out({ssize(n), ssize(c.n_sites())});
            {
              auto* po = out.mutable_data();
              py::gil_scoped_release release;
              c.apply(x.data(), g.data(), n, po);
            }
            return out;
          },
          py::arg("states"), py::arg("operations"))
      .def(
          "unpack_keys",
          [](const Canonicalizer& c, const py::array& keys) {
            const auto k = checked<std::uint8_t>(keys, {-1, ssize(c.key_bytes())}, "keys");
            const auto n = static_cast<std::size_t>(k.shape(0));
            U8 out({ssize(n), ssize(c.n_sites())});
            {
              auto* po = out.mutable_data();
              py::gil_scoped_release release;
              c.unpack_keys(k.data(), n, po);
            }
            return out;
          },
          py::arg("keys"))
      .def(
          "validate",
          [](const Canonicalizer& c, const py::array& states) {
            const auto x = checked<std::uint8_t>(states, {-1, ssize(c.n_sites())}, "states");
            py::gil_scoped_release release;
            c.validate(x.data(), static_cast<std::size_t>(x.shape(0)));
          },
          py::arg("states"));

  py::class_<KeySet>(m, "KeySet", "Exact set of fixed-width keys with counts, in first-seen order.")
      .def(py::init<std::size_t>(), py::arg("key_bytes"))
      .def(
          "insert",
          [](KeySet& s, const py::array& keys) {
            const auto k = checked<std::uint8_t>(keys, {-1, ssize(s.key_bytes())}, "keys");
            const auto n = static_cast<std::size_t>(k.shape(0));
            I64 index(ssize(n));
            py::array_t<bool> is_new(ssize(n));
            s.insert(k.data(), n, index.mutable_data(), reinterpret_cast<std::uint8_t*>(is_new.mutable_data()));
            return py::make_tuple(index, is_new);
          },
          py::arg("keys"), "Returns (class index (n,) int64, is_new (n,) bool).")
      .def(
          "lookup",
          [](const KeySet& s, const py::array& keys) {
            const auto k = checked<std::uint8_t>(keys, {-1, ssize(s.key_bytes())}, "keys");
            I64 index(k.shape(0));
            s.lookup(k.data(), static_cast<std::size_t>(k.shape(0)), index.mutable_data());
            return index;
          },
          py::arg("keys"))
      .def("__len__", &KeySet::size)
      .def_property_readonly("key_bytes", &KeySet::key_bytes)
      .def("keys",
           [](const KeySet& s) {
             U8 out({ssize(s.size()), ssize(s.key_bytes())});
             std::copy(s.keys().begin(), s.keys().end(), out.mutable_data());
             return out;
           })
      .def("counts", [](const KeySet& s) {
        I64 out(ssize(s.size()));
        std::copy(s.counts().begin(), s.counts().end(), out.mutable_data());
        return out;
      });
}
