"""Python client for the CouponRank gRPC service (installed as ``couponrank.client``)."""

from .client import (
    CouponRankClient,
    CouponRankError,
    EventResult,
    IneligibleCoupon,
    ModelInfo,
    RankedCoupon,
    RankResult,
    Reason,
    behaviour,
    claim,
    empty_result,
    impression,
    money,
    money_amount,
    redemption,
    timestamp,
    tls_credentials,
)

__all__ = ["CouponRankClient", "CouponRankError", "EventResult", "IneligibleCoupon", "ModelInfo", "RankedCoupon",
           "RankResult", "Reason", "behaviour", "claim", "empty_result", "impression", "money", "money_amount",
           "redemption", "timestamp", "tls_credentials"]
