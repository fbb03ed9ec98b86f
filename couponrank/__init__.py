"""CouponRank: personalized coupon ranking (feature store, training, gRPC serving)."""

__version__ = "0.1.0"
