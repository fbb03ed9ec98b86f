"""Python client for the CouponRank gRPC service (installed as ``couponrank.client``)."""

from .client import (
    CouponRankClient,
    CouponRankError,
    IneligibleCoupon,
    ModelInfo,
    RankedCoupon,
    RankResult,
    Reason,
    empty_result,
    money,
    money_amount,
    timestamp,
    tls_credentials,
)

__all__ = ["CouponRankClient", "CouponRankError", "IneligibleCoupon", "ModelInfo", "RankedCoupon",
           "RankResult", "Reason", "empty_result", "money", "money_amount", "timestamp", "tls_credentials"]
