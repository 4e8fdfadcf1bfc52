"""HMAC-SHA256 signatures of model artifacts (Python's :mod:`hmac`, nothing home-made).

A model file is a pickle, and unpickling runs code: the sha256 in a manifest beside it only
detects corruption, since whoever can write the directory can write both. A signature made
with a key the writer of the artifact holds (``ADVISOR_SIGNING_KEY``) and checked before
anything is unpickled tells an artifact this team made from one anybody else put there.

What is signed is one message: a domain tag, the manifest's length and bytes, then the
model file's bytes; the length keeps the boundary between the two from being shifted. The
signature file records a *key id* (an HMAC of a fixed label under the key: it names the key
without revealing it) so that an error can say "signed with another key" rather than
"tampered"; verification never trusts it, it tries every configured key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["ALGORITHM", "MIN_KEY_CHARS", "SigningKeys", "artifact_mac", "key_id"]

ALGORITHM = "HMAC-SHA256"
MIN_KEY_CHARS = 32  # 32 characters of a token_urlsafe(32) carry ~190 bits
_DOMAIN = b"window-advisor model artifact v1\x00"
_KEY_ID_LABEL = b"window-advisor signing key id"


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs new artifacts and, during a rotation, the one it replaces (still
    accepted when verifying). Keys never show in ``repr`` (so never in a log line)."""

    current: bytes = field(repr=False)
    previous: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for key in self.verifying():
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(f"a signing key needs at least {MIN_KEY_CHARS} characters")

    def verifying(self) -> Iterator[bytes]:
        """The keys a signature may have been made with: current first."""
        yield self.current
        if self.previous is not None:
            yield self.previous

    def key_ids(self) -> list[str]:
        return [key_id(key) for key in self.verifying()]


def key_id(key: bytes) -> str:
    """A short public name of ``key``: its HMAC of a fixed label (reveals nothing of it)."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def artifact_mac(key: bytes, manifest: bytes, model: bytes) -> str:
    """The hex HMAC-SHA256 of an artifact: domain tag, manifest length and bytes, model bytes."""
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    mac.update(len(manifest).to_bytes(8, "big"))
    mac.update(manifest)
    mac.update(model)
    return mac.hexdigest()
