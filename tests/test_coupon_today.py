"""A coupon's impressions and redemptions today (features/coupon_today.py, issue 11): the
batch history build-features writes, what training joins at an impression, the values
the server pushes from its event log's day counters, and the per-request read that
serves them to the next ranking (not the 60-s coupon cache)."""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd

from couponrank.features import coupon_today
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

pytest_plugins = ["server_fixtures"]  # built, fresh_ws

EPOCH = pd.Timestamp(0, tz="UTC")


def _coupon_events(built) -> pd.DataFrame:
    from couponrank.features.cleaning import clean_raw

    ce = clean_raw(built.raw).coupon_events
    ce = ce.assign(coupon_id=ce.coupon_id.astype(str), event_type=ce.event_type.astype(str))
    ce = ce[ce.event_type.isin(list(coupon_today.TYPES))]
    return ce.assign(unix=(ce.event_ts - EPOCH).dt.total_seconds()).sort_values(["coupon_id", "unix"], kind="stable")


def test_the_batch_history_equals_the_shared_definition(built):
    """build-features' coupon_today_activity (every coupon at once) equals
    coupon_today.counts coupon by coupon; each row is stamped a microsecond after its
    instant and says the instant."""
    rows = pd.read_parquet(built.repo / "data" / "coupon_today_activity.parquet")
    ce = _coupon_events(built)
    assert len(rows) == len(ce.drop_duplicates(["coupon_id", "unix"]))
    np.testing.assert_array_equal(
        (rows.event_timestamp - EPOCH).dt.total_seconds().to_numpy(), rows[coupon_today.AT].to_numpy() + 1e-6)
    checked = 0
    coupons = sorted(ce.coupon_id.unique())
    for coupon in coupons[:: max(1, len(coupons) // 40)]:
        mine = ce[ce.coupon_id == coupon]
        got = rows[rows.coupon_id == coupon].sort_values(coupon_today.AT)
        want = coupon_today.counts(mine.unix.to_numpy(), mine.event_type.to_numpy(), got[coupon_today.AT].to_numpy())
        for name in coupon_today.FEATURES:
            np.testing.assert_array_equal(got[name].to_numpy(), want[name], err_msg=f"{coupon} {name}")
        checked += int((got[list(coupon_today.FEATURES)].to_numpy() > 1).sum())
    assert checked > 0  # days that really hold several events


def test_counts_are_of_the_requests_day():
    """coupon_today.context: a row of the request's UTC day counts, one of an earlier
    day (or none) counts 0; redemptions per impression need an impression."""
    day = 20_000 * coupon_today.DAY
    values = {"coupon_impressions_today": np.array([4.0, 4.0, np.nan, 0.0]),
              "coupon_redemptions_today": np.array([1.0, 1.0, np.nan, 2.0]),
              coupon_today.AT: np.array([day + 3_600, day - 60, np.nan, day + 10]),
              "request_ts_unix": np.full(4, day + 7_200.0)}
    out = coupon_today.context(values)
    assert list(out) == list(coupon_today.OUTPUTS)
    assert out["ctx_coupon_impressions_today"].tolist() == [4.0, 0.0, 0.0, 0.0]
    assert out["ctx_coupon_redemptions_today"].tolist() == [1.0, 0.0, 0.0, 2.0]
    np.testing.assert_array_equal(out["ctx_coupon_redemptions_per_impression_today"], [0.25, np.nan, np.nan, np.nan])


def test_training_joins_the_counts_before_each_impression(built):
    """Feast's point-in-time join (ranker_v5) gives an impression at t the coupon's
    impressions and redemptions of t's UTC day strictly before t: not its own, as a
    request at t is answered before its impressions are recorded."""
    from couponrank.training.dataset import build_training_set, label_impressions

    impressions = label_impressions(built.raw)
    ce = _coupon_events(built)
    # the impressions of the coupons shown most often on one day: several per day each
    day = impressions.event_timestamp.dt.floor("D")
    busiest = impressions.groupby([impressions.coupon_id, day]).size().sort_values(kind="stable").index[-5:]
    sample = impressions[pd.MultiIndex.from_arrays([impressions.coupon_id, day]).isin(busiest)]
    assert len(sample) >= 10
    got = build_training_set(built.repo, sample.reset_index(drop=True), "ranker_v5").frame
    got = got.set_index("impression_id").loc[sample.impression_id]
    t = (sample.event_timestamp - EPOCH).dt.total_seconds().to_numpy()
    start = np.floor(t / coupon_today.DAY) * coupon_today.DAY
    for stem, event_type in (("impressions", "impression"), ("redemptions", "redemption")):
        want = []
        for coupon, lo, hi in zip(sample.coupon_id, start, t):
            mine = ce[(ce.coupon_id == coupon) & (ce.event_type == event_type)].unix.to_numpy()
            want.append(float(((mine >= lo) & (mine < hi)).sum()))
        np.testing.assert_array_equal(got[f"ctx_coupon_{stem}_today"].to_numpy(), want, err_msg=stem)
    assert got["ctx_coupon_impressions_today"].max() >= 2


def _event(event_id: str, user: str, when: pd.Timestamp, **kind) -> pb.Event:
    e = pb.Event(event_id=event_id, user_id=user, **kind)
    e.event_time.FromDatetime(when.to_pydatetime())
    return e


def test_recorded_impressions_and_redemptions_reach_the_next_read(built, fresh_ws, tmp_path):
    """RecordEvents of impressions and a redemption: the log's day counters are pushed
    into coupon_today_activity, and a ranking's read (per request, not the 60-s coupon
    cache) sees them at once. An event from before the snapshots' end pushes nothing."""
    from couponrank.features import repo
    from couponrank.server.main import serve
    from couponrank.server.online import OnlineFeatures
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    now = pd.Timestamp(NOW)
    running = serve(fresh_ws, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=str(tmp_path / "events.db"), catalog_refresh_seconds=0))
    store = repo.store(fresh_ws)
    online = OnlineFeatures(store, service_name="ranker_v5")  # the model's service or not: its own reads
    try:
        assert coupon_today.VIEW in online.live_views  # tagged live: read per request
        coupons = sorted(running.ranker.catalog.current.index)[:2]
        before = online.read("u-today", coupons)
        imp = [_event(f"today-imp-{i}", f"u-today-{i % 2}", now - pd.Timedelta(minutes=30 - i),
                      impression=pb.ImpressionEvent(coupon_id=coupons[0], position=1, placement=pb.PLACEMENT_HOME))
               for i in range(3)]
        red = _event("today-red", "u-today-0", now - pd.Timedelta(minutes=5),
                     redemption=pb.RedemptionEvent(coupon_id=coupons[0], order_id="o-today"))
        old = _event("today-old", "u-today-0", repo.built_until(fresh_ws) - pd.Timedelta(hours=1),
                     impression=pb.ImpressionEvent(coupon_id=coupons[1], position=1, placement=pb.PLACEMENT_HOME))
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            out = stub.RecordEvents(pb.RecordEventsRequest(events=[*imp, red, old]), timeout=10)
            assert [r.status for r in out.results] == [pb.EVENT_STATUS_ACCEPTED] * 5
        running.ranker.fresh.flush()
        assert running.ranker.fresh.failed == 0 and running.ranker.fresh.coupons_pushed == 1
        after = online.read("u-today", coupons)
        assert after["coupon_impressions_today"].tolist()[0] == 3.0
        assert after["coupon_redemptions_today"].tolist()[0] == 1.0
        assert after[coupon_today.AT].tolist()[0] == (now - pd.Timedelta(minutes=5)).timestamp()
        # served as Feast's on-demand view computes it online (train/serve parity)
        [view] = [v for v in online.on_demand if v.name == coupon_today.CONTEXT_VIEW]
        ours = view.compute(after, {"request_ts_unix": np.full(2, now.timestamp())})
        theirs = store.get_online_features(
            features=[f"{coupon_today.CONTEXT_VIEW}:{name}" for name in coupon_today.OUTPUTS],
            entity_rows=[{"coupon_id": c, "request_ts_unix": now.timestamp(), "cart_value": 0.0,
                          "cart_categories": "", "placement": "home"} for c in coupons]).to_dict()
        for name in coupon_today.OUTPUTS:
            np.testing.assert_array_equal(ours[name], np.array(theirs[name], dtype=np.float64), err_msg=name)
        assert ours["ctx_coupon_redemptions_per_impression_today"][0] == 1 / 3
        # the other coupon's row is the batch's, untouched by the event before the end
        np.testing.assert_array_equal(after["coupon_impressions_today"][1:], before["coupon_impressions_today"][1:])
        # a late impression of an earlier hour moves the count on without moving the row back in time
        late = _event("today-late", "u-today-1", now - pd.Timedelta(hours=2),
                      impression=pb.ImpressionEvent(coupon_id=coupons[0], position=2, placement=pb.PLACEMENT_HOME))
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            assert stub.RecordEvents(pb.RecordEventsRequest(events=[late]), timeout=10).results[0].status == \
                pb.EVENT_STATUS_ACCEPTED
        running.ranker.fresh.flush()
        again = online.read("u-today", coupons)
        assert again["coupon_impressions_today"].tolist()[0] == 4.0
        assert again[coupon_today.AT].tolist()[0] == (now - pd.Timedelta(minutes=5)).timestamp()
    finally:
        online.close()
        running.stop(0).wait(5)
