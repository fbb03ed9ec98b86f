"""Real-data check: the ranker and the baselines on the UCI in-vehicle coupon survey.

Data: ``in-vehicle-coupon-recommendation.csv`` (UCI dataset 603, CC BY 4.0; see
``../shared/data/in-vehicle-coupon/SOURCE.md``), 12,684 rows. Each row is one survey
answer: a driving situation (destination, passenger, weather, temperature, time), the
driver's profile, one coupon (5 venue types x expiration 2h/1d, with the venue's
distance and direction) and ``Y`` = 1 if the driver would accept it.

Why straight to a training set, not to the raw event schema
-----------------------------------------------------------
The synthetic pipeline starts from raw events (users, items, coupons, behaviour and
coupon events with timestamps) and builds point-in-time features through Feast. This
survey has none of that: no user id, no timestamps, no items, no orders, no claim vs
redemption. Mapping it to events would mean inventing ids, times, orders and a label
window, and the "features" Feast would compute from them would describe the invented
data, not the drivers. So the adapter goes directly to what ``train_ranker`` and the
baselines consume: one row per (ranking group, coupon) with request_id, position,
label, user_id, coupon_id and numeric features.

Adapter choices
---------------
* Respondent: the survey has no id, so ``user_id`` is a hash of the 13 profile
  columns (NaN filled with "missing"). Respondents with identical profiles merge into
  one id (the file order suggests ~20 such collisions); that only makes the split
  more conservative: merged respondents always land in the same part.
* Ranking group (``request_id``): respondent x situation (destination, passanger,
  weather, temperature, time): the coupons one driver was offered in one situation.
  Expiration, distance and direction describe the coupon's venue, not the situation,
  so they vary inside a group. Most groups hold a single coupon (see
  ``group_size_counts``); single-coupon groups carry no ranking information, so the
  metrics are reported on all groups and on groups with >= 2 coupons.
* ``coupon_id`` = venue type + expiration, e.g. "Bar|1d" (10 coupons).
* ``label`` = 2 * Y, so ``relevant_at=2`` means "accepted", as "redeemed" does in the
  synthetic grades (0 nothing, 1 claimed, 2 redeemed).
* Features: ordinal codes for ordered categories (age, income, education, the five
  visit-frequency columns never < less1 < 1~3 < 4~8 < gt8, temperature, hour of day,
  expiration in hours, distance level), one-hot columns for low-cardinality nominal
  ones, occupation (25 values) as an integer code that LightGBM treats as categorical
  (the sklearn baselines get its one-hot columns instead), the direction flag, and one
  coupon x driver match feature: how often the driver visits this coupon's kind of
  venue. ``car`` is dropped as a feature (99% empty); it still enters the respondent
  hash. Missing answers stay NaN (LightGBM routes them; the sklearn baselines impute
  the median); ``missing_counts`` reports them.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from couponrank.training.baselines import BASELINES
from couponrank.training.dataset import TrainingDataError
from couponrank.training.metrics import evaluate_ranking
from couponrank.training.ranker import load_config, train_ranker

DATA_PATH = (Path(__file__).resolve().parents[1].parent
             / "shared/data/in-vehicle-coupon/in-vehicle-coupon-recommendation.csv")

RANKER = "lightgbm_ranker"
# Not a baseline to beat but the floor: with 1-3 coupons per group and ~57% accepted,
# a random order already scores a high NDCG, so read every number against this row.
RANDOM = "random"
FEATURE_BASELINES = {"logistic_regression", "decision_tree", "random_forest", "lightgbm_binary"}
SPLITS = ("respondent", "warm")
POPULATIONS = ("all", "groups_2plus")

PROFILE_COLUMNS = ["gender", "age", "maritalStatus", "has_children", "education", "occupation", "income",
                   "car", "Bar", "CoffeeHouse", "CarryAway", "RestaurantLessThan20", "Restaurant20To50"]
SITUATION_COLUMNS = ["destination", "passanger", "weather", "temperature", "time"]
COUPON_COLUMNS = ["coupon", "expiration", "toCoupon_GEQ5min", "toCoupon_GEQ15min", "toCoupon_GEQ25min",
                  "direction_same", "direction_opp"]
REQUIRED_COLUMNS = SITUATION_COLUMNS + COUPON_COLUMNS + PROFILE_COLUMNS + ["Y"]

# --- vocabularies: a value outside them is an error, never a silent NaN ---------------
FREQUENCY = {"never": 0, "less1": 1, "1~3": 2, "4~8": 3, "gt8": 4}
FREQUENCY_COLUMNS = {"Bar": "bar_freq", "CoffeeHouse": "coffee_house_freq", "CarryAway": "carry_away_freq",
                     "RestaurantLessThan20": "restaurant_lt20_freq", "Restaurant20To50": "restaurant_20_50_freq"}
# coupon type -> the profile column that says how often the driver goes to such a venue
VENUE_OF_COUPON = {"Bar": "Bar", "Coffee House": "CoffeeHouse", "Carry out & Take away": "CarryAway",
                   "Restaurant(<20)": "RestaurantLessThan20", "Restaurant(20-50)": "Restaurant20To50"}
ORDINALS = {
    "age": ("age_level", {"below21": 0, "21": 1, "26": 2, "31": 3, "36": 4, "41": 5, "46": 6, "50plus": 7}),
    "income": ("income_level", {
        "Less than $12500": 0, "$12500 - $24999": 1, "$25000 - $37499": 2, "$37500 - $49999": 3,
        "$50000 - $62499": 4, "$62500 - $74999": 5, "$75000 - $87499": 6, "$87500 - $99999": 7,
        "$100000 or More": 8}),
    "education": ("education_level", {
        "Some High School": 0, "High School Graduate": 1, "Some college - no degree": 2,
        "Associates degree": 3, "Bachelors degree": 4, "Graduate degree (Masters or Doctorate)": 5}),
    "time": ("hour", {"7AM": 7, "10AM": 10, "2PM": 14, "6PM": 18, "10PM": 22}),
    "expiration": ("expiration_hours", {"2h": 2, "1d": 24}),
    "temperature": ("temperature_f", {30: 30, 55: 55, 80: 80}),
    "gender": ("gender_male", {"Female": 0, "Male": 1}),
    "has_children": ("has_children", {0: 0, 1: 1}),
    "direction_same": ("direction_same", {0: 0, 1: 1}),
}
ONE_HOT = {
    "destination": ("dest", {"No Urgent Place": "no_urgent_place", "Home": "home", "Work": "work"}),
    "passanger": ("passenger", {"Alone": "alone", "Friend(s)": "friends", "Partner": "partner", "Kid(s)": "kids"}),
    "weather": ("weather", {"Sunny": "sunny", "Rainy": "rainy", "Snowy": "snowy"}),
    "coupon": ("coupon", {"Bar": "bar", "Coffee House": "coffee_house", "Carry out & Take away": "carry_out",
                          "Restaurant(<20)": "restaurant_lt20", "Restaurant(20-50)": "restaurant_20_50"}),
    "maritalStatus": ("marital", {"Single": "single", "Married partner": "married", "Unmarried partner":
                                  "unmarried_partner", "Divorced": "divorced", "Widowed": "widowed"}),
}
OCCUPATIONS = [
    "Architecture & Engineering", "Arts Design Entertainment Sports & Media", "Building & Grounds Cleaning & Maintenance",
    "Business & Financial", "Community & Social Services", "Computer & Mathematical", "Construction & Extraction",
    "Education&Training&Library", "Farming Fishing & Forestry", "Food Preparation & Serving Related",
    "Healthcare Practitioners & Technical", "Healthcare Support", "Installation Maintenance & Repair", "Legal",
    "Life Physical Social Science", "Management", "Office & Administrative Support", "Personal Care & Service",
    "Production Occupations", "Protective Service", "Retired", "Sales & Related", "Student",
    "Transportation & Material Moving", "Unemployed",
]
COUPON_SHORT = {"Bar": "Bar", "Coffee House": "CoffeeHouse", "Carry out & Take away": "CarryOut",
                "Restaurant(<20)": "Restaurant<20", "Restaurant(20-50)": "Restaurant20-50"}


def _one_hot_names() -> list[str]:
    return [f"{prefix}_{name}" for prefix, values in ONE_HOT.values() for name in values.values()]


OCCUPATION_ONE_HOT = [f"occ_{i:02d}" for i in range(len(OCCUPATIONS))]
_COMMON = ([new for new, _ in ORDINALS.values()] + list(FREQUENCY_COLUMNS.values())
           + ["venue_freq", "distance_level"] + _one_hot_names())
# LightGBM gets occupation as one categorical code; the sklearn baselines get one-hot columns
# (a logistic regression on an arbitrary integer code would be meaningless).
RANKER_FEATURES = _COMMON + ["occupation_code"]
BASELINE_FEATURES = _COMMON + OCCUPATION_ONE_HOT
CATEGORICAL_FEATURES = ["occupation_code"]
# Domain priors, not fitted: a venue the driver visits more often, a longer validity and
# a nearer venue never make a coupon less attractive.
MONOTONE_CONSTRAINTS = {"venue_freq": 1, "expiration_hours": 1, "distance_level": -1}


# --- loading ------------------------------------------------------------------------------


def _check_columns(raw: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise TrainingDataError(f"{what}: missing column(s) {', '.join(missing)} "
                                f"(expected the UCI in-vehicle coupon columns)")


def load_uci(path: Path | str = DATA_PATH) -> pd.DataFrame:
    """The survey CSV as a DataFrame, with its columns checked."""
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(
            f"{path}: UCI in-vehicle coupon file not found (expected "
            f"in-vehicle-coupon-recommendation.csv under ../shared/data/in-vehicle-coupon/)")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{path}: not a readable CSV: {exc}") from None
    _check_columns(raw, str(path))
    return raw


# --- adapter ------------------------------------------------------------------------------


def respondent_ids(raw: pd.DataFrame) -> pd.Series:
    """A stable id per distinct profile: sha1 of the 13 profile columns, NaN -> "missing"."""
    profile = raw[PROFILE_COLUMNS].astype(object).where(raw[PROFILE_COLUMNS].notna(), "missing").astype(str)
    key = profile.agg("|".join, axis=1)
    digest = {k: "r_" + hashlib.sha1(k.encode()).hexdigest()[:12] for k in key.unique()}
    return key.map(digest).rename("user_id")


def _encode(values: pd.Series, mapping: dict, column: str) -> pd.Series:
    """Map a column through a vocabulary; NaN stays NaN, an unknown value is an error."""
    out = values.map(mapping)
    bad = out.isna() & values.notna()
    if bad.any():
        unknown = sorted(map(str, values[bad].unique()))[:5]
        raise TrainingDataError(f"column {column}: unexpected value(s) {unknown}; known: {list(mapping)}")
    return out.astype(np.float64)


def to_training_set(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per survey answer: request_id, position, user_id, coupon_id, label (0/2),
    source_row (the CSV row) and float64 feature columns (RANKER_FEATURES + BASELINE_FEATURES)."""
    _check_columns(raw, "UCI in-vehicle coupon data")
    raw = raw.reset_index(drop=True)
    y = raw["Y"]
    if y.isna().any() or not y.isin([0, 1]).all():
        raise TrainingDataError(f"column Y: labels must be 0/1, got {sorted(map(str, y.unique()))[:5]}")
    if raw[SITUATION_COLUMNS + COUPON_COLUMNS].isna().any().any():
        cols = raw[SITUATION_COLUMNS + COUPON_COLUMNS].columns[raw[SITUATION_COLUMNS + COUPON_COLUMNS].isna().any()]
        raise TrainingDataError(f"situation/coupon column(s) {', '.join(cols)} have missing values")

    feats: dict[str, pd.Series] = {}
    for column, (new, mapping) in ORDINALS.items():
        feats[new] = _encode(raw[column], mapping, column)
    for column, new in FREQUENCY_COLUMNS.items():
        feats[new] = _encode(raw[column], FREQUENCY, column)
    # how often the driver goes to this coupon's kind of venue (NaN if they did not say)
    venue = _encode(raw["coupon"], {c: i for i, c in enumerate(VENUE_OF_COUPON)}, "coupon").astype(int)
    freq = np.column_stack([feats[FREQUENCY_COLUMNS[VENUE_OF_COUPON[c]]] for c in VENUE_OF_COUPON])
    feats["venue_freq"] = pd.Series(freq[np.arange(len(raw)), venue.to_numpy()])
    # toCoupon_GEQ5min is always 1; GEQ25min implies GEQ15min: 0 = <15 min, 1 = 15-25, 2 = >=25
    for flag in ("toCoupon_GEQ15min", "toCoupon_GEQ25min"):
        _encode(raw[flag], {0: 0, 1: 1}, flag)
    if (raw["toCoupon_GEQ25min"] > raw["toCoupon_GEQ15min"]).any():
        raise TrainingDataError("columns toCoupon_GEQ25min/toCoupon_GEQ15min: a venue >= 25 min but < 15 min away")
    feats["distance_level"] = (raw["toCoupon_GEQ15min"] + raw["toCoupon_GEQ25min"]).astype(np.float64)
    for column, (prefix, mapping) in ONE_HOT.items():
        _encode(raw[column], {v: 0 for v in mapping}, column)  # vocabulary check
        for value, name in mapping.items():
            feats[f"{prefix}_{name}"] = (raw[column] == value).astype(np.float64)
    occupation = _encode(raw["occupation"], {o: i for i, o in enumerate(OCCUPATIONS)}, "occupation")
    feats["occupation_code"] = occupation
    for i, col in enumerate(OCCUPATION_ONE_HOT):
        feats[col] = (occupation == i).astype(np.float64).where(occupation.notna())

    user = respondent_ids(raw)
    situation = raw[SITUATION_COLUMNS].astype(str).agg("|".join, axis=1)
    request = (user + "|" + situation).rename("request_id")
    coupon_id = raw["coupon"].map(COUPON_SHORT) + "|" + raw["expiration"].astype(str)
    frame = pd.DataFrame({
        "request_id": request,
        "position": request.groupby(request, sort=False).cumcount() + 1,  # file order inside the group
        "user_id": user,
        "coupon_id": coupon_id,
        "label": (2 * y).astype(np.int64),
        "source_row": np.arange(len(raw)),
    })
    return pd.concat([frame, pd.DataFrame(feats)], axis=1)


def group_size_counts(frame: pd.DataFrame) -> pd.Series:
    """Number of ranking groups per group size (coupons per respondent x situation)."""
    return frame.groupby("request_id").size().value_counts().sort_index().rename("groups")


def missing_counts(frame: pd.DataFrame) -> pd.Series:
    """NaN cells per feature column (only columns with any)."""
    cols = list(dict.fromkeys(RANKER_FEATURES + BASELINE_FEATURES))
    n = frame[cols].isna().sum()
    return n[n > 0]


# --- splits -------------------------------------------------------------------------------


def _assign(rank_fraction: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    train, valid, _ = fractions
    return np.where(rank_fraction < train, "train", np.where(rank_fraction < train + valid, "validation", "test"))


def split_by_respondent(frame: pd.DataFrame, seed: int = 0,
                        fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Part of each row ("train"/"validation"/"test"): a seeded permutation of the
    respondents, so no respondent appears in two parts (cold-start users at test time)."""
    users = np.sort(frame["user_id"].unique())
    order = np.random.default_rng(seed).permutation(len(users))
    rank_fraction = pd.Series((np.argsort(order) + 0.5) / len(users), index=users)
    return pd.Series(_assign(rank_fraction.loc[frame["user_id"]].to_numpy(), fractions), index=frame.index,
                     name="part")


def split_warm(frame: pd.DataFrame, seed: int = 0,
               fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> pd.Series:
    """Part of each row: within each respondent, a seeded shuffle of their ranking groups
    split 60/20/20, so test respondents have history in train (warm users). Groups are
    never cut."""
    groups = frame[["request_id", "user_id"]].drop_duplicates("request_id").sort_values("request_id")
    groups["key"] = np.random.default_rng(seed).random(len(groups))
    groups = groups.sort_values(["user_id", "key"], kind="stable")
    rank = groups.groupby("user_id").cumcount().to_numpy()
    size = groups.groupby("user_id")["request_id"].transform("size").to_numpy()
    part = pd.Series(_assign((rank + 0.5) / size, fractions), index=groups["request_id"].to_numpy())
    return pd.Series(part.loc[frame["request_id"]].to_numpy(), index=frame.index, name="part")


def split_frame(frame: pd.DataFrame, split: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    part = (split_by_respondent if split == "respondent" else split_warm)(frame, seed)
    return {p: frame[part == p] for p in ("train", "validation", "test")}


# --- evaluation ---------------------------------------------------------------------------


def real_data_config(config: dict | None = None) -> dict:
    """A copy of the ranker.yaml config with this feature set's categorical features and
    monotone constraints (the synthetic ones name features that do not exist here)."""
    config = dict(load_config() if config is None else config)
    config["categorical_features"] = list(CATEGORICAL_FEATURES)
    config["monotone_constraints"] = dict(MONOTONE_CONSTRAINTS)
    # ~7.6k training rows: one thread is as fast as two, and OpenMP threads stall badly
    # (seconds instead of ~0.1 s per fit) when another process holds the cores.
    config["lightgbm"] = {**config["lightgbm"], "num_threads": 1}
    # no oracle (no true p), no point-in-time popularity (no coupon stats), and the random
    # order is scored below with the split's own seed
    config["baselines"] = {k: dict(v or {}) for k, v in config["baselines"].items()
                           if k not in ("oracle", "pit_popularity", RANDOM)}
    return config


def interactions_from(train: pd.DataFrame) -> pd.DataFrame:
    """Respondent x coupon weights from the training part: weight = Y (accepted = 1)."""
    w = (train["label"] >= 2).astype(np.float64)
    return (pd.DataFrame({"user_id": train["user_id"], "coupon_id": train["coupon_id"], "weight": w})
            .groupby(["user_id", "coupon_id"], as_index=False)["weight"].sum())


def metrics_table(test: pd.DataFrame, scores: dict[str, np.ndarray], config: dict) -> pd.DataFrame:
    """One row per (model, population): all test groups, and groups with >= 2 coupons
    (single-coupon groups score the same for every model)."""
    sizes = test.groupby("request_id")["request_id"].transform("size").to_numpy()
    rows = []
    for name, score in scores.items():
        for population, mask in (("all", np.ones(len(test), bool)), ("groups_2plus", sizes >= 2)):
            if not mask.any():
                continue
            m = evaluate_ranking(test["label"].to_numpy()[mask], score[mask], test["request_id"].to_numpy()[mask],
                                 ks=config["eval_at"], relevant_at=config["relevant_at"])
            rows.append({"model": name, "population": population, **m})
    return pd.DataFrame(rows)


def evaluate_frame(frame: pd.DataFrame, config: dict | None = None, split: str = "respondent",
                   seed: int = 0) -> pd.DataFrame:
    """Train the LightGBM ranker and every baseline except the oracle on the train part,
    score the test part (plus a seeded random order as the floor). Returns metrics_table plus fit_seconds, split and seed columns;
    ``.attrs`` holds part sizes and the ranker's best iteration."""
    config = real_data_config(config)
    parts = split_frame(frame, split, seed)
    train, valid, test = parts["train"], parts["validation"], parts["test"]
    for name, part in parts.items():
        if part.empty:
            raise TrainingDataError(f"{split} split (seed {seed}): the {name} part is empty; too few respondents")
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    ranker = train_ranker(train, valid, RANKER_FEATURES, config)
    seconds[RANKER] = time.perf_counter() - t
    scores[RANKER] = ranker.score(test)
    interactions = interactions_from(train)
    for name, params in config["baselines"].items():
        kwargs = dict(params)
        if name in FEATURE_BASELINES:
            kwargs["feature_names"] = BASELINE_FEATURES
        if name == "lightgbm_binary":
            kwargs["categorical_features"] = [f for f in config["categorical_features"] if f in BASELINE_FEATURES]
            kwargs["num_threads"] = 1
        t = time.perf_counter()
        model = BASELINES[name](**kwargs).fit(train, interactions)
        seconds[name] = time.perf_counter() - t
        scores[name] = model.score(test)
    scores[RANDOM] = np.random.default_rng(seed).random(len(test))
    seconds[RANDOM] = 0.0
    table = metrics_table(test, scores, config)
    table["fit_seconds"] = table["model"].map(seconds)
    table["split"], table["seed"] = split, seed
    table.attrs = {
        "rows": {p: len(d) for p, d in parts.items()},
        "groups": {p: int(d["request_id"].nunique()) for p, d in parts.items()},
        "respondents": {p: int(d["user_id"].nunique()) for p, d in parts.items()},
        "ranker_best_iteration": ranker.best_iteration,
        "ranker_validation_ndcg@5": ranker.validation_ndcg,
        # groups with >= 2 coupons and both labels: the only ones lambdarank learns from
        "train_groups_with_pairs": int((train.groupby("request_id")["label"].nunique() > 1).sum()),
        "train_rows_in_groups_with_pairs": int(
            (train.groupby("request_id")["label"].transform("nunique") > 1).sum()),
    }
    return table


def subsample_respondents(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """All rows of ``n`` respondents drawn without replacement (seeded)."""
    users = np.sort(frame["user_id"].unique())
    keep = np.random.default_rng(seed).choice(users, size=min(n, len(users)), replace=False)
    return frame[frame["user_id"].isin(keep)]


def evaluate_real(path: Path | str = DATA_PATH, config: dict | None = None, split: str = "respondent",
                  seed: int = 0, max_respondents: int | None = None) -> pd.DataFrame:
    """Load the survey, adapt it, and run ``evaluate_frame`` (see there)."""
    frame = to_training_set(load_uci(path))
    if max_respondents is not None:
        frame = subsample_respondents(frame, max_respondents, seed)
    return evaluate_frame(frame, config, split, seed)
