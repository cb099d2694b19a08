"""Who may use the server: bearer tokens, each for a user and the organizations it belongs to.

A token spec is `NAME=TOKEN`, or `NAME@ORG1,ORG2=TOKEN` for a user who is a member of orgs.
Specs come from `--tokens-file` (one a line), `HFUV_SERVER_TOKENS` (separated by whitespace: an
org list has commas) and `--token` (which every user of the machine can read in the process list).
Without any, the server makes a token for the current user and keeps it in its data dir.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hfuv.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


@dataclass(frozen=True)
class Identity:
    name: str
    orgs: tuple[str, ...] = ()

    def can_use(self, namespace: str) -> bool:
        return namespace == self.name or namespace in self.orgs


def entity_id(name: str) -> str:
    """A stable 24-hex id for a user or org name, shaped like the Hub's."""
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def parse_spec(spec: str, where: str = "--token") -> tuple[str, Identity]:
    who, sep, token = spec.partition("=")
    name, _, orgs = who.partition("@")
    org_names = tuple(o for o in orgs.split(",") if o) if orgs else ()
    if not sep or not token or not all(_NAME.fullmatch(n) for n in (name, *org_names)):
        raise UsageError(
            f"invalid token spec {spec.split('=')[0]}=… in {where}",
            hint="write NAME=TOKEN or NAME@ORG1,ORG2=TOKEN",
        )
    return token, Identity(name, org_names)


ENV_VARIABLE = "HFUV_SERVER_TOKENS"


def load(
    specs: tuple[str, ...],
    tokens_file: Path | None,
    data_dir: Path,
    *,
    from_env: str = "",
    warn: Callable[[str], None] = lambda line: None,
) -> tuple[dict[str, Identity], str | None]:
    """Token → identity; plus the token generated for this user when none was given.
    `from_env` is HFUV_SERVER_TOKENS's value; `warn` gets the ways tokens given could leak."""
    tokens: dict[str, Identity] = {}
    where: dict[str, str] = {}  # token → where it was given, to refuse one token for two users

    def add(spec: str, origin: str) -> None:
        token, identity = parse_spec(spec, origin)
        if token in tokens and tokens[token] != identity:
            raise UsageError(
                f"one token is given for two users, {tokens[token].name} ({where[token]}) and "
                f"{identity.name} ({origin}): its requests could only act as one of them",
                hint="give each user a token of their own",
            )
        tokens[token], where[token] = identity, origin

    if specs:
        warn(
            "warning: --token puts tokens in this server's command line, which every user of "
            f"this machine can read (ps, /proc); give them in --tokens-file FILE or {ENV_VARIABLE}"
        )
    for spec in specs:
        add(spec, "--token")
    for spec in from_env.split():
        add(spec, ENV_VARIABLE)
    if tokens_file is not None:
        try:
            lines = tokens_file.read_text(encoding="utf-8").splitlines()
            mode = tokens_file.stat().st_mode
        except OSError as exc:
            raise UsageError(f"cannot read --tokens-file {tokens_file}: {exc.strerror}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warn(
                f"warning: --tokens-file {tokens_file} is readable by other users (mode "
                f"{stat.S_IMODE(mode):04o}); chmod 600 {tokens_file}"
            )
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                add(line, f"{tokens_file}:{number}")
    if tokens:
        return tokens, None
    saved = data_dir / "token"
    if saved.is_file():
        token, identity = parse_spec(saved.read_text(encoding="utf-8").strip(), str(saved))
    else:
        user = re.sub(r"[^A-Za-z0-9._-]", "-", getpass.getuser()) or "me"
        token = "hfuv_" + secrets.token_urlsafe(24)
        identity = Identity(user)
        data_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(f"{user}={token}\n", encoding="utf-8")
        saved.chmod(0o600)
    return {token: identity}, token
