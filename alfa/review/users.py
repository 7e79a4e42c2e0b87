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
    out = []
    for name in usernames:
        user = {u.username: u for u in client.users}.get(name)
        password = None
        if user is None:
            password = secrets.token_urlsafe(9)
            user = rg.User(username=name, password=password, role="annotator", client=client).create()
        if name not in members:
            ws.add_user(user)
        out.append({"username": name, "role": user.role.value, "workspace": workspace, "password": password})
    new = [u for u in out if u["password"]]
    if new:
        credentials_out = Path(credentials_out)
        exists = credentials_out.exists()
        credentials_out.touch(mode=0o600)
        credentials_out.chmod(0o600)  # touch's mode applies to a new file only: an old one may be readable by all
        with credentials_out.open("a") as f:
            if not exists:
                f.write("username,password,workspace\n")
            f.writelines(f"{u['username']},{u['password']},{workspace}\n" for u in new)
    return out
