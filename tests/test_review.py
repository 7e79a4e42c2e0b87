"""Human review against a real Argilla server (argilla-server 2.8.0 + the noida-db binary, started by
`alfa.review.server` on free ports and stopped by pid): push real askdocs pairs, answer them as two annotator
users through the REST calls the web UI makes, pull, and check verdicts, flips and agreement figures."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import requests

from alfa.cli import main
from alfa.data.pairs import FLIPPED_PAIR_TYPES, data_digest, load_pairs
from alfa.review.connection import ReviewError, connect, open_dataset
from alfa.review.pull import review_status
from alfa.review.push import push
from alfa.review.records import chosen_side
from alfa.review.server import server_down, server_up

# Two annotators' blind answers to `better` on eight records, the hand-computed case of tests/test_agreement.py:
# Cohen's kappa 11/19, Krippendorff's alpha 23/38.
ALICE = ["A", "A", "B", "B", "A", "tie", "B", "A"]
BOB = ["A", "B", "B", "B", "A", "tie", "A", "A"]


def ui_session(url: str, username: str, password: str) -> requests.Session:
    """Log in the way the web UI does (POST /api/v1/token) and keep the bearer token."""
    r = requests.post(f"{url}/api/v1/token", data={"username": username, "password": password})
    r.raise_for_status()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return s


def ui_records(session: requests.Session, url: str, dataset_id: str) -> list[dict]:
    r = session.post(
        f"{url}/api/v1/me/datasets/{dataset_id}/records/search",
        json={"query": {}},
        params={"limit": 100, "include": "responses"},
    )
    r.raise_for_status()
    return [item["record"] for item in r.json()["items"]]


def ui_submit(session, url, record_id, better, only="yes", problems=()):
    values = {"better": {"value": better}, "differ_only_in_attribute": {"value": only}}
    if problems:
        values["problems"] = {"value": list(problems)}
    r = session.post(f"{url}/api/v1/records/{record_id}/responses", json={"values": values, "status": "submitted"})
    assert r.status_code == 201, r.text


def _dataset_id(conn, name, workspace="alfa"):
    return str(conn.client.datasets(name=name, workspace=workspace).id)


def test_push_answer_pull_with_two_annotators(owner, argilla, askdocs_run, tmp_path, capsys):
    state_dir, url, _ = argilla
    pairs_dir = askdocs_run.pairs
    pairs = load_pairs(pairs_dir)
    assert pairs.height >= 8, "the askdocs fixture should give at least 8 pairs"

    # push a stratified sample; pushing again adds nothing (deterministic ids), a bigger sample adds the rest
    assert main(["review", "push", str(pairs_dir), "--sample", "8", "--min-submitted", "2"]) == 0
    assert "8 records pushed, 0 were already there" in capsys.readouterr().out
    assert main(["review", "push", str(pairs_dir), "--sample", "8", "--min-submitted", "2"]) == 0
    assert "0 records pushed, 8 were already there" in capsys.readouterr().out
    ds = owner.client.datasets(name="alfa-review", workspace="alfa")
    records = list(ds.records)
    assert len(records) == 8 and len({r.id for r in records}) == 8
    # blind: the chosen side is random per pair, recorded in hidden metadata
    sides = {r.id: r.metadata["chosen_side"] for r in records}
    assert sides == {pid: chosen_side(pid) for pid in sides}
    sampled = pairs.filter(pl.col("pair_id").is_in(list(sides)))
    assert sampled["attribute"].n_unique() == pairs["attribute"].n_unique()  # strata share the sample
    for rec in records:
        row = sampled.filter(pl.col("pair_id") == rec.id).to_dicts()[0]
        a, b = rec.fields["question_a"], rec.fields["question_b"]
        assert (a, b) == (
            (row["chosen"][0]["content"], row["rejected"][0]["content"])
            if sides[rec.id] == "A"
            else (row["rejected"][0]["content"], row["chosen"][0]["content"])
        )
        assert row["prompt"][0]["content"].strip()[:40] in rec.fields["context"]

    # two annotators, created as annotators (not owners) and added to the workspace
    creds = tmp_path / "reviewers.csv"
    creds.write_text("username,password,workspace\n")
    creds.chmod(0o644)  # an existing file readable by everyone: new passwords must not land in it as it is
    assert main(["review", "users", "add", "alice", "bob", "--credentials", str(creds)]) == 0
    passwords = {line.split(",")[0]: line.split(",")[1] for line in creds.read_text().splitlines()[1:]}
    assert set(passwords) == {"alice", "bob"} and (creds.stat().st_mode & 0o777) == 0o600
    users = {u.username: u for u in owner.client.users}
    assert str(users["alice"].role.value) == "annotator"

    # answer through the web UI's REST calls; hidden metadata never reaches an annotator
    dataset_id = _dataset_id(owner, "alfa-review")
    alice, bob = (ui_session(url, name, passwords[name]) for name in ("alice", "bob"))
    seen = sorted(ui_records(alice, url, dataset_id), key=lambda r: r["external_id"])
    assert len(seen) == 8 and all("chosen_side" not in r["metadata"] for r in seen)
    for i, rec in enumerate(seen):
        only = "no" if i == 4 else "yes"  # both say record 4 differs in more than its attribute
        ui_submit(alice, url, rec["id"], ALICE[i], only=only, problems=["unsafe"] if i == 0 else ())
        ui_submit(bob, url, rec["id"], BOB[i], only=only)

    status = review_status(owner)
    assert status["per_annotator"].filter(pl.col("annotator") == "alice")["submitted"].item() == 8
    assert status["per_stratum"]["done"].sum() == 8

    out = tmp_path / "reviewed"
    assert main(["review", "pull", str(pairs_dir), "-o", str(out), "--on-reversed", "flip"]) == 0
    report = json.loads((out / "review_report.json").read_text())
    better = report["between_annotators"]["better"]
    assert better["records_with_2plus"] == 8 and better["annotators"] == 2 and better["answers"] == 16
    assert better["raw_agreement"] == pytest.approx(6 / 8)
    assert better["krippendorff_alpha"] == pytest.approx(23 / 38)
    assert better["cohen_kappa"][0]["kappa"] == pytest.approx(11 / 19) and better["cohen_kappa"][0]["records"] == 8

    # expected verdicts, record by record (blind labels turned relative to the hidden chosen side)
    ids = [r["external_id"] for r in seen]

    def rel(label, pid):
        return "tie" if label == "tie" else ("agree" if label == chosen_side(pid) else "reversed")

    expected = {pid: rel(a, pid) if rel(a, pid) == rel(b, pid) else "split" for pid, a, b in zip(ids, ALICE, BOB)}
    decisions = {
        **{r["pair_id"]: r for r in pl.read_parquet(out / "review" / "dropped.parquet").to_dicts()},
        **{r["flipped_from"] or r["pair_id"]: r for r in load_pairs(out).to_dicts()},
    }
    for pid in ids:
        assert decisions[pid]["review_verdict"] == expected[pid]
        assert decisions[pid]["decided_by"] == "humans: alice,bob"
    assert decisions[ids[0]]["review_action"] == "drop" and "unsafe" in decisions[ids[0]]["review_reason"]
    assert (
        decisions[ids[4]]["review_action"] == "drop" and "more than the attribute" in decisions[ids[4]]["review_reason"]
    )
    assert decisions[ids[5]]["review_action"] == "drop" and decisions[ids[5]]["review_verdict"] == "tie"
    original = {r["pair_id"]: r for r in pairs.to_dicts()}
    for pid in ids[1:]:
        d = decisions[pid]
        if d["review_verdict"] == "reversed":
            assert d["review_action"] == "flip"
            assert d["chosen"] == original[pid]["rejected"] and d["rejected"] == original[pid]["chosen"]
            assert d["pair_id"] != pid and d["pair_type"] == FLIPPED_PAIR_TYPES[original[pid]["pair_type"]]
        elif d["review_verdict"] in ("agree", "split") and pid != ids[4]:
            assert d["review_action"] == "keep" and d["chosen"] == original[pid]["chosen"]
    # nothing is lost: kept + dropped = every pair, unreviewed pairs are decided by the pipeline
    assert load_pairs(out).height + pl.read_parquet(out / "review" / "dropped.parquet").height == pairs.height
    assert set(
        load_pairs(out).filter(~pl.col("pair_id").is_in(ids) & pl.col("flipped_from").is_null())["decided_by"]
    ) <= {"pipeline"}
    # the reviewed folder got its own lint, of its own data; the pipeline's report was not copied
    assert json.loads((out / "lint_report.json").read_text())["data_digest"] == data_digest(out)
    pvh = report["pipeline_vs_humans"]
    assert pvh["reviewed"] == 8 and pvh["agree"] == sum(v == "agree" for v in expected.values())
    cells = pvh["by_attribute_and_pair_type"]
    assert sum(c["reviewed"] for c in cells) == 8

    # the card reports the review
    assert main(["card", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "## Human review" in card and "Krippendorff" in card


def test_failures_say_what_to_do(owner, argilla, askdocs_run, monkeypatch, tmp_path, capsys):
    _, url, key = argilla
    # server down: nothing listens on this port
    from alfa.review.server import free_port

    monkeypatch.setenv("ARGILLA_API_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ReviewError, match="cannot reach the Argilla server.*alfa review server"):
        connect()
    # wrong key
    monkeypatch.setenv("ARGILLA_API_URL", url)
    monkeypatch.setenv("ARGILLA_API_KEY", "not-the-key")
    with pytest.raises(ReviewError, match="refused the API key in \\$ARGILLA_API_KEY"):
        connect()
    monkeypatch.setenv("ARGILLA_API_KEY", key)
    # a dataset of that name exists with another schema
    import argilla as rg

    settings = rg.Settings(fields=[rg.TextField("text")], questions=[rg.LabelQuestion("label", labels=["x", "y"])])
    rg.Dataset(name="other-schema", workspace="argilla", settings=settings, client=owner.client).create()
    with pytest.raises(ReviewError, match="exists with another schema.*--dataset"):
        push(owner, askdocs_run.pairs, sample=2, dataset="other-schema", workspace="argilla")
    # an annotator outside the workspace
    push(owner, askdocs_run.pairs, sample=2, dataset="access-check", workspace="restricted")
    creds = tmp_path / "r.csv"
    assert main(["review", "users", "add", "carol", "--workspace", "argilla", "--credentials", str(creds)]) == 0
    carol_pw = creds.read_text().splitlines()[1].split(",")[1]
    token = requests.post(f"{url}/api/v1/token", data={"username": "carol", "password": carol_pw}).json()[
        "access_token"
    ]
    # carol's own API key, as the UI's settings page shows it to her
    monkeypatch.setenv(
        "CAROL_KEY", requests.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["api_key"]
    )
    capsys.readouterr()
    assert (
        main(
            [
                "review",
                "pull",
                str(askdocs_run.pairs),
                "-o",
                str(tmp_path / "x"),
                "--api-key-env",
                "CAROL_KEY",
                "--dataset",
                "access-check",
                "--workspace",
                "restricted",
            ]
        )
        == 2
    )
    assert "annotator" in capsys.readouterr().err
    with pytest.raises(
        ReviewError, match="no access to workspace 'restricted'.*users add carol --workspace restricted"
    ):
        open_dataset(connect(api_key_env="CAROL_KEY"), "access-check", "restricted")
    status = review_status(owner, dataset="access-check", workspace="restricted")
    assert "carol" in status["annotators_without_access"] and status["records"] == 2


def test_push_survives_a_server_restart_and_resumes(owner, argilla, askdocs_run):
    state_dir, url, _ = argilla
    push(owner, askdocs_run.pairs, sample=3, dataset="restart")  # an earlier, partial push
    server_down(state_dir, only="argilla")  # the server goes away...
    threading.Timer(2.0, server_up, args=(state_dir,)).start()  # ...and comes back while we push
    t = time.time()
    result = push(owner, askdocs_run.pairs, dataset="restart", retry_for_s=120)
    assert time.time() - t > 2.0
    total = load_pairs(askdocs_run.pairs).height
    assert (result.already_there, result.pushed) == (3, total - 3)
    ids = [r.id for r in owner.client.datasets(name="restart", workspace="alfa").records]
    assert len(ids) == len(set(ids)) == total


def test_the_server_gets_only_the_environment_it_needs(argilla):
    """The user's API keys and tokens stay out of the Argilla server's processes."""
    from alfa.review.server import SERVER_ENV_PASSED, ServerState

    state_dir, _, _ = argilla
    pids = ServerState.load(state_dir).pids
    assert set(pids) == {"search", "argilla"}
    for name, pid in pids.items():
        keys = {
            item.split(b"=", 1)[0].decode() for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if item
        }
        extra = {k for k in keys - set(SERVER_ENV_PASSED) if not k.startswith(("ARGILLA_", "HF_HUB_"))}
        assert extra == set(), f"{name} (pid {pid}) inherited {sorted(extra)}"


def test_server_commands(argilla, tmp_path, capsys):
    state_dir, url, key = argilla
    assert main(["review", "server", "status", "--dir", str(state_dir)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["running"] and status["url"] == url and all(status["processes"].values())
    assert main(["review", "server", "env", "--dir", str(state_dir)]) == 0
    assert capsys.readouterr().out.split() == ["export", f"ARGILLA_API_URL={url}", "export", f"ARGILLA_API_KEY={key}"]
    assert (state_dir / "owner.json").stat().st_mode & 0o777 == 0o600
    assert main(["review", "server", "status", "--dir", str(tmp_path)]) == 1  # never started there
    capsys.readouterr()


def test_server_status_from_another_folder_names_the_folder_it_read(tmp_path, monkeypatch, capsys):
    """--dir is relative to the folder alfa runs in: status and env say which absolute folder they read, and how
    to point at a server started elsewhere (before: "no local server in .alfa-review")."""
    monkeypatch.chdir(tmp_path)
    assert main(["review", "server", "status"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["state_dir"] == str(tmp_path / ".alfa-review")
    assert f"no local server in {tmp_path / '.alfa-review'}" in out.err and "give it with --dir" in out.err
    assert main(["review", "server", "env"]) == 2
    assert f"no local server in {tmp_path / '.alfa-review'}" in capsys.readouterr().err


def test_suggestions_only_when_asked(owner, askdocs_run):
    push(owner, askdocs_run.pairs, sample=2, dataset="blind")
    push(owner, askdocs_run.pairs, sample=2, dataset="suggested", suggestions=True)
    blind = list(owner.client.datasets(name="blind", workspace="alfa").records(with_suggestions=True))
    assert len(blind) == 2 and all(len(r.suggestions) == 0 for r in blind)
    for r in owner.client.datasets(name="suggested", workspace="alfa").records(with_suggestions=True):
        assert r.suggestions["better"].value == r.metadata["chosen_side"] == chosen_side(r.id)
        assert r.suggestions["better"].agent == "alfa pipeline"


def test_pairs_a_method_made_are_reviewed_like_any_other(owner, argilla, tmp_path, capsys):
    """UoT-style pairs (scores, no similarities, the method's own pair type) go through push, the web UI's answers
    and pull; a reversed pair is flipped with its scores, and its type says so."""
    from alfa.methods.scored_pairs import write_scored_pairs

    _, url, _ = argilla
    rows = [
        {
            "pair_id": f"m{i}",
            "qid": f"case{i}",
            "group_id": f"case{i}",
            "attribute": "information_gain",
            "pair_type": "uot_high_vs_low_expected_reward",
            "prompt": [{"role": "user", "content": f"Patient {i}: chest pain for two days."}],
            "chosen": [{"role": "assistant", "content": f"Does the pain spread to your left arm? ({i})"}],
            "rejected": [{"role": "assistant", "content": f"Do you like music? ({i})"}],
            "chosen_similarity": None,
            "rejected_similarity": None,
            "rewriter": "planner",
            "prompt_template_hash": None,
            "attribute_pack": "uot",
            "chosen_score": 0.9,
            "rejected_score": 0.1 * i,
        }
        for i in range(4)
    ]
    manifest = {
        "method": "uot",
        "made_by": "alfa uot pairs",
        "description": "Four hand-written pairs.",
        "attribute_definitions": {"information_gain": "Which question rules out more diagnoses?"},
        "roles": {"questioner": "planner"},
        "settings": {},
        "source": "written for this test",
    }
    pairs_dir = tmp_path / "uot-pairs"
    write_scored_pairs(rows, pairs_dir, manifest)
    assert main(["review", "push", str(pairs_dir), "--dataset", "uot-review"]) == 0
    assert "4 records pushed" in capsys.readouterr().out
    records = list(owner.client.datasets(name="uot-review", workspace="alfa").records)
    assert {r.fields["attribute_definition"] for r in records} == {
        "**Information gain**: Which question rules out more diagnoses?"
    }
    assert all("chosen_similarity" not in r.metadata for r in records)

    creds = tmp_path / "reviewers.csv"
    assert main(["review", "users", "add", "dora", "--credentials", str(creds)]) == 0
    password = creds.read_text().splitlines()[1].split(",")[1]
    dora = ui_session(url, "dora", password)
    for rec in ui_records(dora, url, _dataset_id(owner, "uot-review")):
        reversed_label = "B" if chosen_side(rec["external_id"]) == "A" else "A"
        ui_submit(
            dora, url, rec["id"], reversed_label if rec["external_id"] == "m3" else chosen_side(rec["external_id"])
        )

    out = tmp_path / "reviewed"
    args = ["review", "pull", str(pairs_dir), "-o", str(out), "--dataset", "uot-review", "--on-reversed", "flip"]
    assert main(args) == 0
    reviewed = {r["flipped_from"] or r["pair_id"]: r for r in load_pairs(out).to_dicts()}
    assert len(reviewed) == 4
    flipped = reviewed["m3"]
    assert flipped["pair_type"] == "flipped:uot_high_vs_low_expected_reward"
    assert (flipped["chosen_score"], flipped["rejected_score"]) == (pytest.approx(0.3), 0.9)
    assert flipped["chosen"][0]["content"].startswith("Do you like music?")
    assert all(reviewed[p]["pair_type"] == "uot_high_vs_low_expected_reward" for p in ("m0", "m1", "m2"))
    assert main(["card", str(out)]) == 0  # the method's card, now with the review in it
    card = (out / "README.md").read_text()
    assert "alfa uot pairs" in card and "## Human review" in card and "No human review yet" not in card


def test_an_account_that_fails_leaves_the_passwords_made_before_it_on_disk(owner, argilla, tmp_path, capsys):
    """`users add` writes each password the moment its account exists: when a later name fails (Argilla refuses
    an empty name), the accounts made before it can still log in, and the message says what to do."""
    _, url, _ = argilla
    creds = tmp_path / "reviewers.csv"
    assert main(["review", "users", "add", "erin", "", "--credentials", str(creds)]) != 0
    err = capsys.readouterr().err
    assert "could not add ''" in err and "Added before it: erin" in err and str(creds) in err
    rows = creds.read_text().splitlines()
    assert rows[0] == "username,password,workspace" and rows[1].startswith("erin,")
    assert (creds.stat().st_mode & 0o777) == 0o600
    assert ui_session(url, "erin", rows[1].split(",")[1])  # the password written is the account's
    # the same command again, with the name fixed: erin only joins (no second password), frank is new
    assert main(["review", "users", "add", "erin", "frank", "--credentials", str(creds)]) == 0
    assert [r.split(",")[0] for r in creds.read_text().splitlines()[1:]] == ["erin", "frank"]
