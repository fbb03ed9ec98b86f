"""Feature services by name: which one a config or an artifact means, and its inputs.

Feature services are versioned (``ranker_v1``, ``ranker_v2``, ... in definitions.py): a
training config names the one to train on, the artifact records it, and the server
serves each model with its own, so that a newer service never stops an older model
from serving or being rolled back to.
"""

from __future__ import annotations

# What a config or artifact that names no service means: those made before services
# were versioned were all trained on ranker_v1. training/ranker.yaml names the current one.
DEFAULT_FEATURE_SERVICE = "ranker_v1"


class UnknownFeatureService(ValueError):
    """The registry holds no feature service of that name."""


def get_service(store, name: str):
    """The registry's feature service ``name``, or an error listing the ones it has."""
    try:
        return store.get_feature_service(name)
    except Exception:  # Feast's FeatureServiceNotFoundException (its module moved between releases)
        have = sorted(s.name for s in store.list_feature_services())
        raise UnknownFeatureService(
            f"the feature registry has no feature service '{name}' (it has: {', '.join(have) or 'none'}); "
            "apply the feature repository that defines it (couponrank apply)") from None


def feature_names(store, service: str = DEFAULT_FEATURE_SERVICE) -> list[str]:
    """The model inputs of feature service ``service``, in the service's order."""
    names = []
    for projection in get_service(store, service).feature_view_projections:
        names += [f.name for f in projection.features]
    return names
