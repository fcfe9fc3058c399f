"""Trainable pixel classifier: multi-scale features + a random forest trained from scribbles."""

from .features import DEFAULT_GROUPS, DEFAULT_SCALES, FEATURE_GROUPS, FeatureCache, pixel_features
from .model import MODELS, PixelClassifier

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_SCALES",
    "FEATURE_GROUPS",
    "MODELS",
    "FeatureCache",
    "PixelClassifier",
    "pixel_features",
]
