"""Property predictors: regressors on placement descriptors, and the shipped MoS2 8x8 models.

``from defectspace.predict import PropertyPredictor, predict_properties, load_predictors``.
"""

from __future__ import annotations

from defectspace.predict.predictor import (
    DEFAULT_MODELS,
    PREDICTORS_DIR,
    PropertyPredictor,
    default_model_paths,
    load_default,
    load_predictors,
    predict_properties,
)
from defectspace.predict.regressors import (
    GBMRegressor,
    KernelRidgeRegressor,
    Regressor,
    RidgeRegressor,
    make_regressor,
)

__all__ = [
    "DEFAULT_MODELS",
    "PREDICTORS_DIR",
    "GBMRegressor",
    "KernelRidgeRegressor",
    "PropertyPredictor",
    "Regressor",
    "RidgeRegressor",
    "default_model_paths",
    "load_default",
    "load_predictors",
    "make_regressor",
    "predict_properties",
]
