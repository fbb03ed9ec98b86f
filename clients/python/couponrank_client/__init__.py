"""Python client for the CouponRank gRPC service (installed as ``couponrank.client``)."""

from .client import (
    CouponRankClient,
    CouponRankError,
    IneligibleCoupon,
    ModelInfo,
    RankedCoupon,
    RankResult,
    Reason,
    tls_credentials,
)

__all__ = ["CouponRankClient", "CouponRankError", "IneligibleCoupon", "ModelInfo", "RankedCoupon",
           "RankResult", "Reason", "tls_credentials"]
