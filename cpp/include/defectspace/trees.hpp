#pragma once
#include <cstddef>
#include <cstdint>

namespace defectspace {

/// Flat arrays of a regression-tree ensemble: node k of tree t is entry offsets[t] + k; left and right
/// are node numbers within the same tree.
struct TreeEnsemble {
  const std::int32_t* feature;       ///< feature tested by each inner node
  const double* threshold;           ///< an inner node goes left when x[feature] <= threshold
  const std::uint8_t* missing_left;  ///< ... or when x[feature] is NaN and this is nonzero
  const std::int32_t* left;          ///< left child (node number within the tree)
  const std::int32_t* right;         ///< right child (node number within the tree)
  const std::uint8_t* is_leaf;       ///< nonzero for leaves
  const double* value;               ///< leaf values
  const std::int64_t* offsets;       ///< n_trees + 1 cumulative node counts, offsets[0] == 0
  std::size_t n_trees;
};

/// Throws std::invalid_argument naming the first node whose feature (>= n_features) or child (outside
/// its tree, or not after the node: trees are stored parents first) would be out of range.
void check_tree_ensemble(const TreeEnsemble& trees, std::size_t n_features);

/// out[r] = baseline + sum over trees, in order, of the leaf value row r of x (n x n_features,
/// row-major) reaches. Call check_tree_ensemble first. Rows are split over n_threads (0 = all cores).
void predict_tree_ensemble(const TreeEnsemble& trees, const double* x, std::size_t n, std::size_t n_features,
                           double baseline, double* out, std::size_t n_threads);

/// Several ensembles (the members of an average) stored one after another in ``trees``: member m owns
/// trees member_trees[m] to member_trees[m + 1] - 1 and starts from baselines[m]. out is
/// (n_members x n), row-major: out[m * n + r] has the bits predict_tree_ensemble gives member m.
/// Walking them together reads each row of x from memory once, not once per member.
void predict_tree_ensembles(const TreeEnsemble& trees, const std::int64_t* member_trees, std::size_t n_members,
                            const double* baselines, const double* x, std::size_t n, std::size_t n_features,
                            double* out, std::size_t n_threads);

}  // namespace defectspace
