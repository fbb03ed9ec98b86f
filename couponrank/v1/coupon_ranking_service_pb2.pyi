import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Placement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_UNSPECIFIED: _ClassVar[Placement]
    PLACEMENT_HOME: _ClassVar[Placement]
    PLACEMENT_PRODUCT_PAGE: _ClassVar[Placement]
    PLACEMENT_CART: _ClassVar[Placement]
    PLACEMENT_CHECKOUT: _ClassVar[Placement]
    PLACEMENT_ORDER_CONFIRMATION: _ClassVar[Placement]
    PLACEMENT_CAMPAIGN: _ClassVar[Placement]
    PLACEMENT_MEMBER_CENTRE: _ClassVar[Placement]

class IneligibilityReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INELIGIBILITY_REASON_UNSPECIFIED: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_EXPIRED: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_NOT_YET_VALID: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_MIN_SPEND_NOT_MET: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_OUT_OF_SCOPE: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_PER_USER_LIMIT_REACHED: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_UNKNOWN_COUPON: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_BUDGET_EXHAUSTED: _ClassVar[IneligibilityReason]
    INELIGIBILITY_REASON_NOT_IN_AUDIENCE: _ClassVar[IneligibilityReason]

class DegradedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADED_REASON_UNSPECIFIED: _ClassVar[DegradedReason]
    DEGRADED_REASON_FEATURE_STORE_UNAVAILABLE: _ClassVar[DegradedReason]
    DEGRADED_REASON_DEADLINE_PRESSURE: _ClassVar[DegradedReason]
    DEGRADED_REASON_MODEL_UNAVAILABLE: _ClassVar[DegradedReason]

class BehaviourType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BEHAVIOUR_TYPE_UNSPECIFIED: _ClassVar[BehaviourType]
    BEHAVIOUR_TYPE_VIEW: _ClassVar[BehaviourType]
    BEHAVIOUR_TYPE_ADD_TO_CART: _ClassVar[BehaviourType]
    BEHAVIOUR_TYPE_FAVOURITE: _ClassVar[BehaviourType]
    BEHAVIOUR_TYPE_ORDER: _ClassVar[BehaviourType]

class EventStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATUS_UNSPECIFIED: _ClassVar[EventStatus]
    EVENT_STATUS_ACCEPTED: _ClassVar[EventStatus]
    EVENT_STATUS_DUPLICATE: _ClassVar[EventStatus]
    EVENT_STATUS_REJECTED: _ClassVar[EventStatus]
PLACEMENT_UNSPECIFIED: Placement
PLACEMENT_HOME: Placement
PLACEMENT_PRODUCT_PAGE: Placement
PLACEMENT_CART: Placement
PLACEMENT_CHECKOUT: Placement
PLACEMENT_ORDER_CONFIRMATION: Placement
PLACEMENT_CAMPAIGN: Placement
PLACEMENT_MEMBER_CENTRE: Placement
INELIGIBILITY_REASON_UNSPECIFIED: IneligibilityReason
INELIGIBILITY_REASON_EXPIRED: IneligibilityReason
INELIGIBILITY_REASON_NOT_YET_VALID: IneligibilityReason
INELIGIBILITY_REASON_MIN_SPEND_NOT_MET: IneligibilityReason
INELIGIBILITY_REASON_OUT_OF_SCOPE: IneligibilityReason
INELIGIBILITY_REASON_PER_USER_LIMIT_REACHED: IneligibilityReason
INELIGIBILITY_REASON_UNKNOWN_COUPON: IneligibilityReason
INELIGIBILITY_REASON_BUDGET_EXHAUSTED: IneligibilityReason
INELIGIBILITY_REASON_NOT_IN_AUDIENCE: IneligibilityReason
DEGRADED_REASON_UNSPECIFIED: DegradedReason
DEGRADED_REASON_FEATURE_STORE_UNAVAILABLE: DegradedReason
DEGRADED_REASON_DEADLINE_PRESSURE: DegradedReason
DEGRADED_REASON_MODEL_UNAVAILABLE: DegradedReason
BEHAVIOUR_TYPE_UNSPECIFIED: BehaviourType
BEHAVIOUR_TYPE_VIEW: BehaviourType
BEHAVIOUR_TYPE_ADD_TO_CART: BehaviourType
BEHAVIOUR_TYPE_FAVOURITE: BehaviourType
BEHAVIOUR_TYPE_ORDER: BehaviourType
EVENT_STATUS_UNSPECIFIED: EventStatus
EVENT_STATUS_ACCEPTED: EventStatus
EVENT_STATUS_DUPLICATE: EventStatus
EVENT_STATUS_REJECTED: EventStatus

class RankCouponsRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "candidate_coupon_ids", "context", "top_k", "explain", "max_reasons")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_COUPON_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    MAX_REASONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    candidate_coupon_ids: _containers.RepeatedScalarFieldContainer[str]
    context: RequestContext
    top_k: int
    explain: bool
    max_reasons: int
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., candidate_coupon_ids: _Optional[_Iterable[str]] = ..., context: _Optional[_Union[RequestContext, _Mapping]] = ..., top_k: _Optional[int] = ..., explain: _Optional[bool] = ..., max_reasons: _Optional[int] = ...) -> None: ...

class RequestContext(_message.Message):
    __slots__ = ("placement", "cart_total", "cart_categories", "cart_brands", "cart_merchant_ids", "request_time", "membership")
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CART_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CART_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CART_BRANDS_FIELD_NUMBER: _ClassVar[int]
    CART_MERCHANT_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    placement: Placement
    cart_total: Money
    cart_categories: _containers.RepeatedScalarFieldContainer[str]
    cart_brands: _containers.RepeatedScalarFieldContainer[str]
    cart_merchant_ids: _containers.RepeatedScalarFieldContainer[str]
    request_time: _timestamp_pb2.Timestamp
    membership: Membership
    def __init__(self, placement: _Optional[_Union[Placement, str]] = ..., cart_total: _Optional[_Union[Money, _Mapping]] = ..., cart_categories: _Optional[_Iterable[str]] = ..., cart_brands: _Optional[_Iterable[str]] = ..., cart_merchant_ids: _Optional[_Iterable[str]] = ..., request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., membership: _Optional[_Union[Membership, _Mapping]] = ...) -> None: ...

class Membership(_message.Message):
    __slots__ = ("tier", "segment_ids")
    TIER_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    tier: str
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[str] = ..., segment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Money(_message.Message):
    __slots__ = ("currency_code", "amount_minor")
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency_code: str
    amount_minor: int
    def __init__(self, currency_code: _Optional[str] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class RankCouponsResponse(_message.Message):
    __slots__ = ("request_id", "ranked_coupons", "ineligible_coupons", "model_version", "cold_start", "degraded", "degraded_reason", "degraded_detail", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RANKED_COUPONS_FIELD_NUMBER: _ClassVar[int]
    INELIGIBLE_COUPONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_DETAIL_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ranked_coupons: _containers.RepeatedCompositeFieldContainer[RankedCoupon]
    ineligible_coupons: _containers.RepeatedCompositeFieldContainer[IneligibleCoupon]
    model_version: str
    cold_start: bool
    degraded: bool
    degraded_reason: DegradedReason
    degraded_detail: str
    note: str
    def __init__(self, request_id: _Optional[str] = ..., ranked_coupons: _Optional[_Iterable[_Union[RankedCoupon, _Mapping]]] = ..., ineligible_coupons: _Optional[_Iterable[_Union[IneligibleCoupon, _Mapping]]] = ..., model_version: _Optional[str] = ..., cold_start: _Optional[bool] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[_Union[DegradedReason, str]] = ..., degraded_detail: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RankedCoupon(_message.Message):
    __slots__ = ("coupon_id", "rank", "score", "reasons")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    coupon_id: str
    rank: int
    score: float
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, coupon_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("feature", "value", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: float
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class IneligibleCoupon(_message.Message):
    __slots__ = ("coupon_id", "reason", "detail")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    coupon_id: str
    reason: IneligibilityReason
    detail: str
    def __init__(self, coupon_id: _Optional[str] = ..., reason: _Optional[_Union[IneligibilityReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "user_id", "event_time", "impression", "claim", "redemption", "behaviour")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    event_time: _timestamp_pb2.Timestamp
    impression: ImpressionEvent
    claim: ClaimEvent
    redemption: RedemptionEvent
    behaviour: BehaviourEvent
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., impression: _Optional[_Union[ImpressionEvent, _Mapping]] = ..., claim: _Optional[_Union[ClaimEvent, _Mapping]] = ..., redemption: _Optional[_Union[RedemptionEvent, _Mapping]] = ..., behaviour: _Optional[_Union[BehaviourEvent, _Mapping]] = ...) -> None: ...

class ImpressionEvent(_message.Message):
    __slots__ = ("request_id", "coupon_id", "position", "placement")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    coupon_id: str
    position: int
    placement: Placement
    def __init__(self, request_id: _Optional[str] = ..., coupon_id: _Optional[str] = ..., position: _Optional[int] = ..., placement: _Optional[_Union[Placement, str]] = ...) -> None: ...

class ClaimEvent(_message.Message):
    __slots__ = ("coupon_id", "impression_event_id")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    coupon_id: str
    impression_event_id: str
    def __init__(self, coupon_id: _Optional[str] = ..., impression_event_id: _Optional[str] = ...) -> None: ...

class RedemptionEvent(_message.Message):
    __slots__ = ("coupon_id", "order_id", "discount", "order_total", "impression_event_id")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    ORDER_TOTAL_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    coupon_id: str
    order_id: str
    discount: Money
    order_total: Money
    impression_event_id: str
    def __init__(self, coupon_id: _Optional[str] = ..., order_id: _Optional[str] = ..., discount: _Optional[_Union[Money, _Mapping]] = ..., order_total: _Optional[_Union[Money, _Mapping]] = ..., impression_event_id: _Optional[str] = ...) -> None: ...

class BehaviourEvent(_message.Message):
    __slots__ = ("type", "item_id", "order_id", "amount")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    type: BehaviourType
    item_id: str
    order_id: str
    amount: Money
    def __init__(self, type: _Optional[_Union[BehaviourType, str]] = ..., item_id: _Optional[str] = ..., order_id: _Optional[str] = ..., amount: _Optional[_Union[Money, _Mapping]] = ...) -> None: ...

class RecordEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EventResult]
    def __init__(self, results: _Optional[_Iterable[_Union[EventResult, _Mapping]]] = ...) -> None: ...

class EventResult(_message.Message):
    __slots__ = ("event_id", "status", "detail")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    status: EventStatus
    detail: str
    def __init__(self, event_id: _Optional[str] = ..., status: _Optional[_Union[EventStatus, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model_version", "feature_names", "metrics", "training_data_start_time", "training_data_end_time", "create_time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_START_TIME_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_END_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    training_data_start_time: _timestamp_pb2.Timestamp
    training_data_end_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, model_version: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., training_data_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., training_data_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
