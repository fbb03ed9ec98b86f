"""clients/python/couponrank_client"""
