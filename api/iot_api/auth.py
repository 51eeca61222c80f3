"""Optional bearer-token authentication, from a tokens file (a Docker/Swarm secret).

File format, one token per line, `#` comments allowed:
    write  <token>        a device: may POST /data
    read   <token>        a dashboard or script: may GET the read endpoints
    read,write <token>    both
Tokens are kept only as SHA-256 digests and compared with hmac.compare_digest against every entry
(no early exit), so neither the comparison nor the position of a match leaks through timing.
"""
from __future__ import annotations

import hashlib
import hmac
import re

SCOPES = {"read", "write"}
_TOKEN = re.compile(r"^[\x21-\x7e]{16,256}$")


class TokensError(Exception):
    pass


class Tokens:
    def __init__(self, entries: list[tuple[bytes, frozenset[str]]]):
        self._entries = entries

    @classmethod
    def load(cls, path: str) -> Tokens:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise TokensError(f"API_TOKENS_FILE={path!r}: cannot read it ({exc.strerror})") from None
        entries = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise TokensError(f"{path}:{lineno}: expected '<scopes> <token>', e.g. 'write 3f9c…'")
            scopes = frozenset(s.strip() for s in parts[0].split(","))
            if not scopes <= SCOPES:
                raise TokensError(f"{path}:{lineno}: unknown scope in {parts[0]!r} (use read, write or read,write)")
            if not _TOKEN.fullmatch(parts[1]):
                raise TokensError(f"{path}:{lineno}: a token must be 16-256 printable characters without spaces")
            entries.append((hashlib.sha256(parts[1].encode()).digest(), scopes))
        if not entries:
            raise TokensError(f"API_TOKENS_FILE={path!r}: no tokens in it; remove the setting to run open")
        return cls(entries)

    def scopes_of(self, authorization: bytes | None) -> frozenset[str] | None:
        """Scopes of the bearer token in an Authorization header; None if absent or unknown."""
        if not authorization or not authorization[:7].lower() == b"bearer ":
            return None
        digest = hashlib.sha256(authorization[7:].strip()).digest()
        found: frozenset[str] | None = None
        for known, scopes in self._entries:
            if hmac.compare_digest(known, digest):
                found = scopes
        return found
