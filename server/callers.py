"""Who is calling, and what they may see (``couponrank serve --callers FILE``).

A caller is named by its mutual-TLS client certificate (common name or a DNS
subject alternative name) or by a bearer token (``authorization: Bearer <token>``
metadata). The callers file (TOML) declares them; tokens are stored as their
SHA-256 only (``couponrank token`` makes one)::

    [callers.support-console]
    certificate_name = "support.couponrank.internal"
    explain = "all"

    [callers.checkout]
    token_sha256 = "3f1c..."     # 64 hex digits
    explain = "coupon"

What a caller may see: ``explain = "coupon"`` (the default, and every caller the
file does not name) gets explanations that name only coupon and request features
(the coupon's attributes and statistics, the cart, the placement, the time); the
user's own behaviour features (views, orders, redemptions, recency) are left out,
so that walking user ids with ``explain`` reads nothing about those users.
``explain = "all"`` sees every feature. A bearer token that matches no caller is
refused (UNAUTHENTICATED); a call without one is anonymous. docs/privacy.md.

Who may record events (RecordEvents): when the file names callers, only those with
``record_events = true``; everyone else gets PERMISSION_DENIED, since recorded
redemptions move the per-user limits and budgets every ranking checks. A server
started without a callers file takes events from anyone who can reach it (by
default, the local machine only).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

EXPLAIN_RIGHTS = ("coupon", "all")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = {"certificate_name", "token_sha256", "explain", "record_events"}


class CallersConfigError(ValueError):
    """The callers file cannot be used; the message names the file and the entry."""


class Unauthenticated(Exception):
    """The call's credentials name no caller."""


@dataclass(frozen=True)
class Caller:
    name: str
    explain: str = "coupon"  # one of EXPLAIN_RIGHTS
    record_events: bool = False  # may call RecordEvents (when the server names its callers)

    @property
    def sees_user_features(self) -> bool:
        return self.explain == "all"


ANONYMOUS = Caller("anonymous")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class Callers:
    """Maps credentials to callers; an empty one names nobody (everyone is anonymous)."""

    def __init__(self, callers: dict[str, Caller] | None = None, tokens: dict[str, str] | None = None,
                 certificates: dict[str, str] | None = None):
        self.callers = callers or {}
        self.tokens = tokens or {}  # sha256 hex -> caller name
        self.certificates = certificates or {}  # certificate name -> caller name

    @classmethod
    def load(cls, path: str | Path) -> Callers:
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise CallersConfigError(f"{path}: cannot read the callers file ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CallersConfigError(f"{path}: not valid TOML ({exc})") from None
        unknown = set(doc) - {"callers"}
        if unknown:
            raise CallersConfigError(f"{path}: unknown table(s) {sorted(unknown)}; expected [callers.NAME] entries")
        entries = doc.get("callers", {})
        callers, tokens, certificates = {}, {}, {}
        for name, entry in entries.items():
            where = f"{path}: [callers.{name}]"
            if not isinstance(entry, dict):
                raise CallersConfigError(f"{where}: must be a table")
            bad = set(entry) - _KEYS
            if bad:
                raise CallersConfigError(f"{where}: unknown key(s) {sorted(bad)} (known: {sorted(_KEYS)})")
            explain = entry.get("explain", "coupon")
            if explain not in EXPLAIN_RIGHTS:
                raise CallersConfigError(f"{where}: explain must be one of {list(EXPLAIN_RIGHTS)}, got {explain!r}")
            digest, cert = entry.get("token_sha256"), entry.get("certificate_name")
            if digest is None and cert is None:
                raise CallersConfigError(f"{where}: needs token_sha256 or certificate_name (or both)")
            if digest is not None:
                if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                    raise CallersConfigError(f"{where}: token_sha256 must be 64 lower-case hex digits "
                                             "(`couponrank token` prints one)")
                if digest in tokens:
                    raise CallersConfigError(f"{where}: the same token_sha256 as [callers.{tokens[digest]}]")
                tokens[digest] = name
            if cert is not None:
                if not isinstance(cert, str) or not cert:
                    raise CallersConfigError(f"{where}: certificate_name must be a non-empty string")
                if cert in certificates:
                    raise CallersConfigError(f"{where}: the same certificate_name as [callers.{certificates[cert]}]")
                certificates[cert] = name
            record = entry.get("record_events", False)
            if not isinstance(record, bool):
                raise CallersConfigError(f"{where}: record_events must be true or false, got {record!r}")
            callers[name] = Caller(name, explain, record)
        return cls(callers, tokens, certificates)

    @property
    def uses_tokens(self) -> bool:
        return bool(self.tokens)

    def may_record_events(self, caller: Caller) -> bool:
        """Everyone when no caller is named (no callers file); else the named ones
        with record_events = true."""
        return not self.callers or caller.record_events

    def identify(self, metadata, auth_context) -> Caller:
        """The caller of a call, from its metadata and TLS auth context (a dict, or a
        function giving it: read only when certificate names are configured, as gRPC
        builds it anew on every call); raises Unauthenticated for a bearer token that
        matches nobody."""
        token = None
        for key, value in metadata or ():
            if key == "authorization":
                if not isinstance(value, str) or not value.startswith("Bearer "):
                    raise Unauthenticated("authorization: expected \"Bearer <token>\"")
                token = value[len("Bearer "):].strip()
        if token is not None:
            digest = token_hash(token)
            for known, name in self.tokens.items():  # constant time per comparison
                if hmac.compare_digest(known, digest):
                    return self.callers[name]
            raise Unauthenticated("authorization: the bearer token matches no caller")
        if not self.certificates:
            return ANONYMOUS
        auth_context = (auth_context() if callable(auth_context) else auth_context) or {}
        for key in ("x509_common_name", "x509_subject_alternative_name"):
            for raw in auth_context.get(key, ()):
                name = self.certificates.get(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
                if name is not None:
                    return self.callers[name]
        return ANONYMOUS
