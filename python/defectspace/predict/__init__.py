"""Property predictors: regressors on placement descriptors, and the shipped MoS2 8x8 models.

``from defectspace.predict import PropertyPredictor, predict_properties, load_predictors``.
"""

from __future__ import annotations

from defectspace.predict.domain import TrainingDomain
from defectspace.predict.predictor import (
    DEFAULT_MODELS,
    PREDICTORS_DIR,
    PropertyPredictor,
    default_model_paths,
    describe_domain,
    load_default,
    load_predictors,
    predict_properties,
)
from defectspace.predict.regressors import (
    EnsembleRegressor,
    GBMRegressor,
    KernelRidgeRegressor,
    Regressor,
    RidgeRegressor,
    make_regressor,
)
from defectspace.predict.uncertainty import Calibration, fit_calibration, interval_coverage

__all__ = [
    "DEFAULT_MODELS",
    "PREDICTORS_DIR",
    "Calibration",
    "EnsembleRegressor",
    "GBMRegressor",
    "KernelRidgeRegressor",
    "PropertyPredictor",
    "Regressor",
    "RidgeRegressor",
    "TrainingDomain",
    "default_model_paths",
    "describe_domain",
    "fit_calibration",
    "interval_coverage",
    "load_default",
    "load_predictors",
    "make_regressor",
    "predict_properties",
]
