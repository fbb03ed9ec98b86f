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


# Join keys other than user_id and coupon_id are declared, not fixed: an entity whose
# values come from the candidate coupon says which coupon_attributes column gives them,
# in this tag (features/definitions.py: category <- coupon_target_category). Training
# fills the entity column from the coupon's attributes at the impression; the server
# from its catalogue.
FROM_COUPON_TAG = "couponrank.from_coupon"
REQUEST_KEYS = ("user_id", "coupon_id")  # filled from the request itself
# Registries applied before the tag existed: the category entity meant the target category.
IMPLIED_FROM_COUPON = {"category": "coupon_target_category"}


class UndeclaredJoinKey(ValueError):
    """A view is keyed by a join key nothing says how to fill."""


def declared_keys(store) -> dict[str, str]:
    """{join key: coupon_attributes column} of every entity the registry declares so."""
    declared = {}
    for entity in store.list_entities():
        column = (entity.tags or {}).get(FROM_COUPON_TAG) or IMPLIED_FROM_COUPON.get(entity.join_key)
        if column:
            declared[entity.join_key] = column
    return declared


def mapped_keys(store, service: str) -> dict[str, str]:
    """{join key: coupon_attributes column} for every join key the service's views (and
    its on-demand views' sources) are keyed by, other than user_id and coupon_id."""
    fs = get_service(store, service)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    views = []
    for projection in fs.feature_view_projections:
        if projection.name in odfvs:
            views += list(odfvs[projection.name].source_feature_view_projections)
        else:
            views.append(projection.name)
    declared = declared_keys(store)
    out = {}
    for name in dict.fromkeys(views):
        try:
            keys = store.get_feature_view(name).join_keys
        except Exception:  # not a stored view (e.g. the catalogue is one; an odfv's request source is not)
            continue
        for key in keys:
            if key in REQUEST_KEYS:
                continue
            if key not in declared:
                raise UndeclaredJoinKey(
                    f"feature view {name} is keyed by {key!r}, which neither a request nor a declared entity fills: "
                    f"declare it on its Entity, tags={{'{FROM_COUPON_TAG}': '<coupon_attributes column>'}} "
                    f"(e.g. coupon_campaign_id)")
            out[key] = declared[key]
    return out
