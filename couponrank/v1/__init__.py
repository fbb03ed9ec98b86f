"""couponrank/v1"""
