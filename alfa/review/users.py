"""Stage 7, review: annotator accounts (role annotator), added to the review workspace."""

from __future__ import annotations

import secrets
from pathlib import Path

from alfa.review.connection import DEFAULT_WORKSPACE, Connection, ReviewError


def add_users(
    conn: Connection,
    usernames: list[str],
    workspace: str = DEFAULT_WORKSPACE,
    credentials_out: Path = Path("reviewers.csv"),
) -> list[dict]:
    """Create annotator accounts (role annotator, not owner) and add them to the workspace. New accounts get a
    generated password written to `credentials_out` (readable by you only); existing accounts only join."""
    import argilla as rg

    if conn.role == "annotator":
        raise ReviewError(f"user {conn.username!r} is an annotator; adding users needs an owner key")
    client = conn.client
    ws = (
        client.workspaces(workspace)
        if workspace in {w.name for w in client.workspaces}
        else rg.Workspace(name=workspace, client=client).create()
    )
    members = {u.username for u in ws.users}
    credentials_out = Path(credentials_out)
    out = []
    for name in usernames:
        try:
            user = {u.username: u for u in client.users}.get(name)
            password = None
            if user is None:
                password = secrets.token_urlsafe(9)
                user = rg.User(username=name, password=password, role="annotator", client=client).create()
                # written the moment the account exists: a later failure must not leave it with a password nobody has
                _append_credentials(credentials_out, name, password, workspace)
            if name not in members:
                ws.add_user(user)
        except Exception as e:
            done = ", ".join(u["username"] for u in out) or "none"
            raise ReviewError(
                f"could not add {name!r}: {e}. Added before it: {done}"
                + (f" (their new passwords are in {credentials_out})" if any(u["password"] for u in out) else "")
                + "; fix the name or the server and run the same command again: existing accounts only join"
            ) from e
        out.append({"username": name, "role": user.role.value, "workspace": workspace, "password": password})
    return out


def _append_credentials(path: Path, username: str, password: str, workspace: str) -> None:
    exists = path.exists()
    path.touch(mode=0o600)
    path.chmod(0o600)  # touch's mode applies to a new file only: an old one may be readable by all
    with path.open("a") as f:
        if not exists:
            f.write("username,password,workspace\n")
        f.write(f"{username},{password},{workspace}\n")
