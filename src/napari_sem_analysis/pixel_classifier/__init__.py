"""Trainable pixel classifier: multi-scale features + a random forest trained from scribbles."""

from .features import DEFAULT_GROUPS, DEFAULT_SCALES, FEATURE_GROUPS, FeatureCache, pixel_features
from .model import MODELS, PixelClassifier
from .predict import load_pixel_classifier, pixel_classify

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_SCALES",
    "FEATURE_GROUPS",
    "MODELS",
    "FeatureCache",
    "PixelClassifier",
    "load_pixel_classifier",
    "pixel_classify",
    "pixel_features",
]
