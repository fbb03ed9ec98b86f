"""The CouponRank gRPC server: catalogue, stages, online features, model, service.

Start it with ``couponrank serve`` or :func:`couponrank.server.main.serve`.
"""
