"""Membership tiers, segments and coupon audiences: one reading shared by the batch
pipeline and the server.

A workspace declares its loyalty tiers (lowest first) and its audience segments in
``membership.yaml`` (the project's copy beside definitions.py is the default). Both
are stored as numbers, so that the rule is one comparison in training data, in the
online store and in the server:

* a user's tier as its rank (0: not a member, 1: the first tier, ...), a user's
  segments as a bit mask (bit i: the i-th declared segment);
* a coupon's audience as the lowest rank it admits plus the mask of the segments it
  names: ``all`` (0, 0), ``members`` (1, 0), ``tier>=gold`` (gold's rank, 0),
  ``segments:a|b`` (0, bits of a and b).

A user is in a coupon's audience when ``rank >= min_tier`` and, if the coupon names
segments, ``user_mask & coupon_mask != 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from couponrank import schema

MEMBERSHIP_FILE = "membership.yaml"
PROJECT_FILE = Path(__file__).resolve().parent / MEMBERSHIP_FILE
SEPARATOR = "|"
MAX_NAME_BYTES = 128
MAX_SEGMENTS = 52  # bits of a float64's mantissa: masks stay exact as Feast Float64 values


class MembershipConfigError(ValueError):
    """membership.yaml cannot be used; the message names the file and the key."""


class BadAudience(ValueError):
    """An audience text that does not parse; the message says why."""


@dataclass(frozen=True)
class Membership:
    """A workspace's membership.yaml: tiers lowest first, segment ids."""

    tiers: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()

    def rank(self, tier: str | None) -> int:
        """0 for no tier (None or ""), else 1 + the tier's position; KeyError when unknown."""
        if tier is None or tier == "":
            return 0
        try:
            return self.tiers.index(tier) + 1
        except ValueError:
            raise KeyError(tier) from None

    def mask(self, segment_ids) -> int:
        """The bit mask of segment ids; KeyError naming the first unknown one."""
        out = 0
        for s in segment_ids:
            try:
                out |= 1 << self.segments.index(s)
            except ValueError:
                raise KeyError(s) from None
        return out

    def segment_names(self, mask: float) -> list[str]:
        """The segment ids of a mask (NaN: none)."""
        m = int(mask) if np.isfinite(mask) else 0
        return [s for i, s in enumerate(self.segments) if m >> i & 1]


def load(repo_dir: Path | None = None) -> Membership:
    """The membership.yaml of ``repo_dir``, or the project's when the folder has none
    (a workspace laid out before the file existed)."""
    path = Path(repo_dir) / MEMBERSHIP_FILE if repo_dir is not None else PROJECT_FILE
    if not path.is_file():
        path = PROJECT_FILE
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MembershipConfigError(f"{path}: cannot be read as YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise MembershipConfigError(f"{path}: want a mapping with the keys 'tiers' and 'segments'")
    extra = sorted(set(doc) - {"tiers", "segments"})
    if extra:
        raise MembershipConfigError(f"{path}: unknown key '{extra[0]}' (the keys are 'tiers' and 'segments')")
    lists = {}
    for key in ("tiers", "segments"):
        names = doc.get(key) or []
        if not isinstance(names, list) or not all(isinstance(t, str) and t and t.strip() == t for t in names):
            raise MembershipConfigError(f"{path}: {key}: want a list of non-empty names without surrounding spaces")
        if len(set(names)) != len(names):
            raise MembershipConfigError(f"{path}: {key}: a name is listed twice")
        bad = [t for t in names if SEPARATOR in t or len(t.encode()) > MAX_NAME_BYTES]
        if bad:
            raise MembershipConfigError(f"{path}: {key}: {bad[0][:32]!r} contains '|' or is over 128 bytes")
        lists[key] = tuple(names)
    if len(lists["segments"]) > MAX_SEGMENTS:
        raise MembershipConfigError(f"{path}: segments: {len(lists['segments'])} declared, at most {MAX_SEGMENTS}")
    return Membership(lists["tiers"], lists["segments"])


@dataclass(frozen=True)
class Audience:
    text: str  # canonical form, as coupon_attributes stores it
    min_tier: int = 0  # lowest tier rank admitted; 0: members and non-members alike
    segment_mask: int = 0  # segments named (bits); 0: no segment needed
    segment_count: int = 0

    @property
    def restricted(self) -> bool:
        return self.min_tier > 0 or self.segment_mask != 0


EVERYONE = Audience(schema.AUDIENCE_ALL)


def parse_audience(text: str | None, config: Membership) -> Audience:
    """Read a coupon's ``audience`` (null or blank: everyone); BadAudience says why not."""
    if text is None or text.strip() in ("", schema.AUDIENCE_ALL):
        return EVERYONE
    t = text.strip()
    if t == schema.AUDIENCE_MEMBERS:
        if not config.tiers:
            raise BadAudience("'members', but membership.yaml declares no tiers")
        return Audience(t, 1)
    if t.startswith(schema.AUDIENCE_TIER_PREFIX):
        tier = t[len(schema.AUDIENCE_TIER_PREFIX):].strip()
        if not tier:
            raise BadAudience("'tier>=' names no tier")
        try:
            rank = config.rank(tier)
        except KeyError:
            raise BadAudience(f"unknown tier {tier[:32]!r}") from None
        return Audience(schema.AUDIENCE_TIER_PREFIX + tier, rank)
    if t.startswith(schema.AUDIENCE_SEGMENTS_PREFIX):
        segs = split(t[len(schema.AUDIENCE_SEGMENTS_PREFIX):])
        if not segs:
            raise BadAudience("'segments:' names no segment")
        try:
            mask = config.mask(segs)
        except KeyError as exc:
            raise BadAudience(f"unknown segment {str(exc.args[0])[:32]!r}") from None
        return Audience(schema.AUDIENCE_SEGMENTS_PREFIX + SEPARATOR.join(segs), 0, mask, len(segs))
    raise BadAudience(f"{t[:32]!r} is none of all, members, tier>=<tier>, segments:<id>|<id>")


def split(text: str | None) -> tuple[str, ...]:
    """Sorted distinct ids of a "|"-joined list (blank entries ignored)."""
    if not isinstance(text, str):
        return ()
    return tuple(sorted({s.strip() for s in text.split(SEPARATOR) if s.strip()}))


def describe(audience: str) -> str:
    """The audience a coupon needs, in words (the NOT_IN_AUDIENCE detail: the coupon's
    audience only, never the user's membership)."""
    if audience.startswith(schema.AUDIENCE_TIER_PREFIX):
        return f"for members of tier {audience[len(schema.AUDIENCE_TIER_PREFIX):]!r} or above"
    if audience.startswith(schema.AUDIENCE_SEGMENTS_PREFIX):
        segs = audience[len(schema.AUDIENCE_SEGMENTS_PREFIX):].split(SEPARATOR)
        return ("for users in segment " + " or ".join(repr(s) for s in segs[:5])
                + (f" or {len(segs) - 5} more" if len(segs) > 5 else ""))
    return "for members only"


def admitted(min_tier: np.ndarray, segment_mask: np.ndarray, user_rank: float, user_mask: float) -> np.ndarray:
    """Per coupon: does its audience admit a user of tier rank ``user_rank`` in the
    segments of ``user_mask``? NaN (unknown) ranks and masks count as 0: not a member,
    in no segment; a NaN coupon audience admits everyone."""
    rank = user_rank if np.isfinite(user_rank) else 0.0
    user = np.int64(user_mask) if np.isfinite(user_mask) else np.int64(0)
    min_tier = np.asarray(min_tier, dtype=np.float64)
    coupon = np.nan_to_num(np.asarray(segment_mask, dtype=np.float64)).astype(np.int64)
    return ~(min_tier > rank) & ((coupon == 0) | ((coupon & user) != 0))
