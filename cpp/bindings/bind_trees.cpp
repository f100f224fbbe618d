#include <string>

#include "arrays.hpp"
#include "defectspace/trees.hpp"

namespace py = pybind11;
using defectspace::bindings::checked;

void bind_trees(py::module_& m) {
  m.def(
      "predict_tree_ensemble",
      [](const py::array& x, const py::array& feature, const py::array& threshold, const py::array& missing_left,
         const py::array& left, const py::array& right, const py::array& is_leaf, const py::array& value,
         const py::array& offsets, double baseline, std::size_t n_threads) {
        const auto xx = checked<double>(x, {-1, -1}, "x");
        const auto off = checked<std::int64_t>(offsets, {-1}, "offsets");
        if (off.shape(0) < 1) throw py::value_error("offsets: expected n_trees + 1 entries");
        const auto n_nodes = static_cast<py::ssize_t>(off.data()[off.shape(0) - 1]);
        const auto fe = checked<std::int32_t>(feature, {n_nodes}, "feature");
        const auto th = checked<double>(threshold, {n_nodes}, "threshold");
        const auto ml = checked<std::uint8_t>(missing_left, {n_nodes}, "missing_left");
        const auto le = checked<std::int32_t>(left, {n_nodes}, "left");
        const auto ri = checked<std::int32_t>(right, {n_nodes}, "right");
        const auto lf = checked<std::uint8_t>(is_leaf, {n_nodes}, "is_leaf");
        const auto va = checked<double>(value, {n_nodes}, "value");
        const defectspace::TreeEnsemble trees{fe.data(), th.data(), ml.data(), le.data(), ri.data(),
                                              lf.data(), va.data(), off.data(),
                                              static_cast<std::size_t>(off.shape(0) - 1)};
        const auto n = static_cast<std::size_t>(xx.shape(0));
        const auto n_features = static_cast<std::size_t>(xx.shape(1));
        py::array_t<double> out(static_cast<py::ssize_t>(n));
        {
          auto* po = out.mutable_data();
          py::gil_scoped_release release;  // std::invalid_argument reaches Python as ValueError
          defectspace::check_tree_ensemble(trees, n_features);
          defectspace::predict_tree_ensemble(trees, xx.data(), n, n_features, baseline, po, n_threads);
        }
        return out;
      },
      py::arg("x"), py::arg("feature"), py::arg("threshold"), py::arg("missing_left"), py::arg("left"),
      py::arg("right"), py::arg("is_leaf"), py::arg("value"), py::arg("offsets"), py::arg("baseline"),
      py::arg("n_threads") = 0,
      "Predictions (n,) float64 of a regression-tree ensemble stored as flat node arrays (see trees.hpp).");
  m.def(
      "predict_tree_ensembles",
      [](const py::array& x, const py::array& feature, const py::array& threshold, const py::array& missing_left,
         const py::array& left, const py::array& right, const py::array& is_leaf, const py::array& value,
         const py::array& offsets, const py::array& member_trees, const py::array& baselines,
         std::size_t n_threads) {
        const auto xx = checked<double>(x, {-1, -1}, "x");
        const auto off = checked<std::int64_t>(offsets, {-1}, "offsets");
        if (off.shape(0) < 1) throw py::value_error("offsets: expected n_trees + 1 entries");
        const auto n_trees = off.shape(0) - 1;
        const auto n_nodes = static_cast<py::ssize_t>(off.data()[n_trees]);
        const auto fe = checked<std::int32_t>(feature, {n_nodes}, "feature");
        const auto th = checked<double>(threshold, {n_nodes}, "threshold");
        const auto ml = checked<std::uint8_t>(missing_left, {n_nodes}, "missing_left");
        const auto le = checked<std::int32_t>(left, {n_nodes}, "left");
        const auto ri = checked<std::int32_t>(right, {n_nodes}, "right");
        const auto lf = checked<std::uint8_t>(is_leaf, {n_nodes}, "is_leaf");
        const auto va = checked<double>(value, {n_nodes}, "value");
        const auto mt = checked<std::int64_t>(member_trees, {-1}, "member_trees");
        const auto n_members = mt.shape(0) - 1;
        if (n_members < 1) throw py::value_error("member_trees: expected n_members + 1 entries");
        const auto* pm = mt.data();
        if (pm[0] != 0 || pm[n_members] != n_trees)
          throw py::value_error("member_trees must run from 0 to the number of trees");
        for (py::ssize_t m = 0; m < n_members; ++m)
          if (pm[m + 1] <= pm[m]) throw py::value_error("member_trees: member " + std::to_string(m) + " has no tree");
        const auto bl = checked<double>(baselines, {n_members}, "baselines");
        const defectspace::TreeEnsemble trees{fe.data(), th.data(), ml.data(), le.data(), ri.data(),
                                              lf.data(), va.data(), off.data(), static_cast<std::size_t>(n_trees)};
        const auto n = static_cast<std::size_t>(xx.shape(0));
        const auto n_features = static_cast<std::size_t>(xx.shape(1));
        py::array_t<double> out({static_cast<py::ssize_t>(n_members), static_cast<py::ssize_t>(n)});
        {
          auto* po = out.mutable_data();
          py::gil_scoped_release release;
          defectspace::check_tree_ensemble(trees, n_features);
          defectspace::predict_tree_ensembles(trees, pm, static_cast<std::size_t>(n_members), bl.data(), xx.data(),
                                              n, n_features, po, n_threads);
        }
        return out;
      },
      py::arg("x"), py::arg("feature"), py::arg("threshold"), py::arg("missing_left"), py::arg("left"),
      py::arg("right"), py::arg("is_leaf"), py::arg("value"), py::arg("offsets"), py::arg("member_trees"),
      py::arg("baselines"), py::arg("n_threads") = 0,
      "Predictions (n_members, n) float64 of several tree ensembles stored one after another (see trees.hpp).");
}
