"""Stage 7, review: human spot-checks of preference pairs in Argilla, and their verdicts back in the data.

    push    a stratified sample of pairs -> blind A/B records (which side is the pipeline's choice is
            randomized per pair, deterministically, and kept in hidden metadata)
    users   annotator accounts, added to the workspace
    status  progress per annotator and per stratum (attribute x pair type)
    pull    per-pair verdicts (majority of submitted answers), agreement pipeline-vs-humans and between
            annotators, and a *reviewed* copy of the pair dataset where every row says who decided

Works against any Argilla 2.x server: the local one (`alfa review server up`) or a production one. The
server address and API key come from the environment (ARGILLA_API_URL, ARGILLA_API_KEY), never from a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import requests

from alfa.agreement import AGREE, REVERSED, SPLIT, TIE, annotator_agreement, majority, relative_label
from alfa.attributes import AttributePack, load_pack
from alfa.pairs import SPLITS, load_pairs

DEFAULT_DATASET = "alfa-review"
DEFAULT_WORKSPACE = "alfa"
PROBLEMS = {
    "not_a_question": "Not a question",
    "medically_wrong": "Medically wrong or misleading",
    "unsafe": "Unsafe (could delay urgent care or cause harm)",
    "contains_phi": "Contains personal health information (a name, date, place...)",
    "other": "Other problem (say which in the comment)",
}
BETTER_LABELS = {"A": "Question A", "B": "Question B", "tie": "Equally good / can't tell"}
ONLY_LABELS = {"yes": "Yes", "no": "No"}


class ReviewError(RuntimeError):
    """A problem the user can fix; the message says how."""


# ---------------------------------------------------------------- connection

@dataclass
class Connection:
    url: str
    api_key: str
    username: str
    role: str

    @property
    def headers(self) -> dict:
        return {"X-Argilla-Api-Key": self.api_key}

    @functools.cached_property
    def client(self):
        import argilla as rg

        return rg.Argilla(api_url=self.url, api_key=self.api_key, timeout=120)


def connect(api_url: str | None = None, api_key_env: str = "ARGILLA_API_KEY") -> Connection:
    """Check the server answers and accepts the key before anything else, with a message that says what to do."""
    url = (api_url or os.environ.get("ARGILLA_API_URL") or "").rstrip("/")
    if not url:
        raise ReviewError("no Argilla server given: set ARGILLA_API_URL (or --api-url). For a local server run "
                          "`alfa review server up`, then `eval \"$(alfa review server env)\"`")
    key = os.environ.get(api_key_env)
    if not key:
        raise ReviewError(f"${api_key_env} is not set: export the API key of an Argilla owner or admin "
                          "(local server: `eval \"$(alfa review server env)\"`)")
    try:
        r = requests.get(f"{url}/api/v1/me", headers={"X-Argilla-Api-Key": key}, timeout=15)
    except requests.ConnectionError:
        raise ReviewError(f"cannot reach the Argilla server at {url}: is it running? "
                          "(local server: `alfa review server status` / `alfa review server up`)") from None
    if r.status_code == 401:
        raise ReviewError(f"the Argilla server at {url} refused the API key in ${api_key_env} (HTTP 401): "
                          "check the key (Argilla UI: your avatar > My settings > API key)")
    if r.status_code != 200:
        raise ReviewError(f"{url}/api/v1/me answered HTTP {r.status_code}: is {url} an Argilla 2.x server?")
    me = r.json()
    return Connection(url, key, me["username"], me["role"])


def open_dataset(conn: Connection, name: str, workspace: str, must_exist: bool = True):
    """The dataset, or a clear error: missing, or not readable with this key."""
    r = requests.get(f"{conn.url}/api/v1/me/datasets", headers=conn.headers, timeout=30)
    r.raise_for_status()
    workspaces = {w["id"]: w["name"] for w in requests.get(f"{conn.url}/api/v1/me/workspaces", headers=conn.headers,
                                                           timeout=30).json()["items"]}
    if workspace not in workspaces.values():
        raise ReviewError(f"user {conn.username!r} ({conn.role}) has no access to workspace {workspace!r}"
                          + (f"; an owner can add them: `alfa review users add {conn.username} --workspace {workspace}`"
                             if conn.role == "annotator" else "; check --workspace"))
    for d in r.json()["items"]:
        if d["name"] == name and workspaces.get(d["workspace_id"]) == workspace:
            return conn.client.datasets(name=name, workspace=workspace)
    if must_exist:
        raise ReviewError(f"no dataset {name!r} in workspace {workspace!r} on {conn.url}; push pairs first with "
                          f"`alfa review push PAIRS_DIR --dataset {name} --workspace {workspace}`")
    return None


# ---------------------------------------------------------------- the review dataset's schema

def review_settings(pack: AttributePack, min_submitted: int):
    import argilla as rg

    return rg.Settings(
        guidelines=guidelines(pack),
        fields=[
            rg.TextField("context", title="Patient's message (and earlier questions and answers)", use_markdown=True),
            rg.TextField("attribute_definition", title="Judge only this attribute", use_markdown=True),
            rg.TextField("question_a", title="Question A"),
            rg.TextField("question_b", title="Question B"),
        ],
        questions=[
            rg.LabelQuestion("better", labels=BETTER_LABELS, title="Which question is better on this attribute?"),
            rg.LabelQuestion("differ_only_in_attribute", labels=ONLY_LABELS,
                             title="Do A and B differ only in this attribute (otherwise about the same)?"),
            rg.MultiLabelQuestion("problems", labels=PROBLEMS, required=False,
                                  title="Problems with either question (tick all that apply)"),
            rg.TextQuestion("comment", required=False, title="Comment (optional)"),
        ],
        metadata=[
            rg.TermsMetadataProperty("attribute", title="Attribute"),
            # Hidden from reviewers so the review stays blind; visible to owners for filtering.
            rg.TermsMetadataProperty("pair_type", visible_for_annotators=False),
            rg.TermsMetadataProperty("chosen_side", visible_for_annotators=False),
            rg.TermsMetadataProperty("split", visible_for_annotators=False),
            rg.TermsMetadataProperty("rewriter", visible_for_annotators=False),
            rg.FloatMetadataProperty("chosen_similarity", visible_for_annotators=False),
            rg.FloatMetadataProperty("rejected_similarity", visible_for_annotators=False),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def guidelines(pack: AttributePack) -> str:
    """Shown in Argilla beside every record. The long guide with screenshots: annotation/reviewer_guide.md."""
    attrs = "\n".join(f"- **{a.name.replace('_', ' ').capitalize()}**: {a.definition.strip()}"
                      for a in pack.attributes.values())
    return f"""\
# Reviewing follow-up questions

Each record shows a patient's message and two follow-up questions a doctor could ask next, **A** and **B**.
They were written to differ in **one attribute** (shown above the questions). Judge only that attribute.

1. **Which question is better on this attribute?** A, B, or *Equally good / can't tell*.
2. **Do A and B differ only in this attribute?** *No* when one also changes the topic, adds a second
   question or differs in some other way that matters.
3. **Problems**: tick any that apply to either question, even if you answered the rest.
4. Submit. *Discard* a record you cannot judge at all.

The order of A and B is random. Nothing you see tells you which one a computer preferred.
Do not copy any text from these records elsewhere: it is health information.

## The attributes
{attrs}
"""


def _schema(settings) -> dict:
    """What must match for records pushed now and before to mean the same thing."""
    def labels(q):
        return sorted(q.labels) if hasattr(q, "labels") and q.labels else None
    return {"fields": sorted(f.name for f in settings.fields),
            "questions": {q.name: [type(q).__name__, labels(q)] for q in settings.questions},
            "metadata": sorted(m.name for m in settings.metadata)}


def _schema_diff(ours: dict, theirs: dict) -> list[str]:
    out = []
    for part in ours:
        if ours[part] != theirs[part]:
            out.append(f"{part}: the dataset has {theirs[part]}, alfa pushes {ours[part]}")
    return out


# ---------------------------------------------------------------- push

def sample_pairs(pairs: pl.DataFrame, n: int | None, stratify: list[str], seed: int = 0) -> pl.DataFrame:
    """Up to n pairs spread evenly over the strata (every attribute x pair type gets its share; a stratum with
    fewer pairs gives its leftover to the others). Deterministic for a seed, whatever the row order."""
    unknown = [c for c in stratify if c not in pairs.columns]
    if unknown:
        raise ReviewError(f"--stratify {','.join(unknown)}: not a column of the pairs; use e.g. attribute,pair_type")
    key = pl.col("pair_id").map_elements(lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest(),
                                         return_dtype=pl.String)
    pairs = pairs.with_columns(_order=key).sort("_order")
    if n is None or n >= pairs.height:
        return pairs.drop("_order")
    strata = pairs.partition_by(stratify, maintain_order=True) if stratify else [pairs]
    strata.sort(key=lambda df: df.height)
    taken, left = [], n
    for i, df in enumerate(strata):
        share = left // (len(strata) - i)  # even split of what is left over the strata still to go
        take = df.head(min(share, df.height))
        taken.append(take)
        left -= take.height
    return pl.concat(taken).sort("_order").drop("_order")


def chosen_side(pair_id: str) -> str:
    """Where the pipeline's chosen question goes, A or B: random per pair but the same on every push."""
    return "A" if int(hashlib.sha256(f"side:{pair_id}".encode()).hexdigest(), 16) % 2 == 0 else "B"


def render_context(messages: list[dict]) -> str:
    """The prompt's chat messages as markdown a reviewer reads: the patient's post, then earlier turns."""
    names = {"user": "Patient", "assistant": "Doctor asked", "system": "Note"}
    return "\n\n".join(f"**{names.get(m['role'], m['role'])}:** {m['content'].strip()}" for m in messages)


def to_record(row: dict, pack: AttributePack, suggest: bool = False):
    import argilla as rg

    side = chosen_side(row["pair_id"])
    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    a, b = (chosen, rejected) if side == "A" else (rejected, chosen)
    attr = pack.attributes.get(row["attribute"])
    definition = attr.definition.strip() if attr else "(not in the attribute pack)"
    suggestions = [rg.Suggestion("better", side, agent="alfa pipeline")] if suggest else []
    return rg.Record(
        id=row["pair_id"],
        fields={"context": render_context(row["prompt"]), "question_a": a, "question_b": b,
                "attribute_definition": f"**{row['attribute'].replace('_', ' ').capitalize()}**: {definition}"},
        metadata={"attribute": row["attribute"], "pair_type": row["pair_type"], "chosen_side": side,
                  "split": row["split"], "rewriter": row["rewriter"],
                  "chosen_similarity": float(row["chosen_similarity"]),
                  "rejected_similarity": float(row["rejected_similarity"])},
        suggestions=suggestions,
    )


def pack_of(pairs_dir: Path, pack: str | None = None) -> AttributePack:
    """The attribute pack the pairs were made with (its copy in the run dir), or the one named by `pack`."""
    if pack:
        return load_pack(pack)
    manifest = json.loads((Path(pairs_dir) / "pairs.json").read_text())
    for run_dir in manifest["run_dirs"]:
        if (Path(run_dir) / "attribute_pack.yaml").exists():
            return load_pack(Path(run_dir) / "attribute_pack.yaml")
    return load_pack(manifest["run"]["attribute_pack"]["name"])


@dataclass
class PushResult:
    dataset: str
    workspace: str
    sampled: int
    already_there: int
    pushed: int
    url: str


def push(conn: Connection, pairs_dir: Path, sample: int | None = None, stratify: tuple[str, ...] = ("attribute", "pair_type"),
         dataset: str = DEFAULT_DATASET, workspace: str = DEFAULT_WORKSPACE, min_submitted: int = 1,
         suggestions: bool = False, pack: str | None = None, seed: int = 0, batch_size: int = 64,
         retry_for_s: float = 120.0) -> PushResult:
    """Push a stratified sample of the pairs as blind A/B records. Record ids are the pair ids, so pushing
    again adds only what is missing: when the server goes away (a restart) the push waits up to `retry_for_s`
    seconds and sends what it does not have yet; a rerun resumes where a killed push stopped."""
    import argilla as rg

    pairs = load_pairs(pairs_dir)
    attribute_pack = pack_of(pairs_dir, pack)
    settings = review_settings(attribute_pack, min_submitted)
    chosen = sample_pairs(pairs, sample, list(stratify), seed)
    first_look: list[set[str]] = []

    def attempt():  # asks the server what it has each time, so a retry or a rerun sends only what is missing
        client = conn.client
        if workspace not in {w.name for w in client.workspaces}:
            if conn.role == "annotator":
                raise ReviewError(f"user {conn.username!r} is an annotator and cannot push; use an owner or admin key")
            rg.Workspace(name=workspace, client=client).create()
        ds = open_dataset(conn, dataset, workspace, must_exist=False)
        if ds is None:
            ds = rg.Dataset(name=dataset, workspace=workspace, settings=settings, client=client).create()
        else:
            diff = _schema_diff(_schema(settings), _schema(ds.settings))
            if diff:
                raise ReviewError(f"dataset {dataset!r} in workspace {workspace!r} exists with another schema ("
                                  + "; ".join(diff) + "). Push to a new name with --dataset, or delete the old one "
                                  "in the Argilla UI (dataset settings > delete) if its answers are not needed")
        there = {r.id for r in ds.records(with_responses=False, with_suggestions=False)}
        first_look.append(there)
        todo = [to_record(row, attribute_pack, suggestions) for row in chosen.to_dicts() if row["pair_id"] not in there]
        if todo:
            ds.records.log(todo, batch_size=min(batch_size, len(todo)))

    deadline, delay = time.time() + retry_for_s, 0.5
    while True:
        try:
            attempt()
            break
        except ReviewError:
            raise
        except Exception as e:  # noqa: BLE001 - the SDK wraps transport errors in several ways
            if not _server_gone(e) or time.time() > deadline:
                raise ReviewError(f"push to {conn.url} failed: {e}. Records already pushed stay there; rerun the "
                                  "same command to push the rest") from e
            time.sleep(delay)
            delay = min(delay * 2, 5)
    already = len(first_look[0] & set(chosen["pair_id"])) if first_look else 0
    return PushResult(dataset, workspace, chosen.height, already, chosen.height - already, conn.url)


def _server_gone(error: BaseException) -> bool:
    """True when the error (or what caused it) is a lost connection or a 5xx: worth waiting for a restart."""
    import httpx

    while error is not None:
        if isinstance(error, (httpx.TransportError, requests.ConnectionError, ConnectionError)):
            return True
        if isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500:
            return True
        error = error.__cause__ or error.__context__
    return False


# ---------------------------------------------------------------- users

def add_users(conn: Connection, usernames: list[str], workspace: str = DEFAULT_WORKSPACE,
              credentials_out: Path = Path("reviewers.csv")) -> list[dict]:
    """Create annotator accounts (role annotator, not owner) and add them to the workspace. New accounts get a
    generated password written to `credentials_out` (readable by you only); existing accounts only join."""
    import argilla as rg

    if conn.role == "annotator":
        raise ReviewError(f"user {conn.username!r} is an annotator; adding users needs an owner key")
    client = conn.client
    ws = (client.workspaces(workspace) if workspace in {w.name for w in client.workspaces}
          else rg.Workspace(name=workspace, client=client).create())
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
        out.append({"username": name, "role": user.role.value,
                    "workspace": workspace, "password": password})
    new = [u for u in out if u["password"]]
    if new:
        credentials_out = Path(credentials_out)
        exists = credentials_out.exists()
        credentials_out.touch(mode=0o600)
        with credentials_out.open("a") as f:
            if not exists:
                f.write("username,password,workspace\n")
            f.writelines(f"{u['username']},{u['password']},{workspace}\n" for u in new)
    return out


# ---------------------------------------------------------------- fetch answers

def fetch(conn: Connection, dataset: str = DEFAULT_DATASET, workspace: str = DEFAULT_WORKSPACE):
    """(records, answers): one row per record (pair_id, attribute, pair_type, chosen_side) and one row per
    annotator and record (annotator, status, better, differ_only_in_attribute, problems, comment)."""
    if conn.role == "annotator":
        raise ReviewError(f"user {conn.username!r} is an annotator and sees only their own answers; "
                          "status and pull need an owner or admin key")
    ds = open_dataset(conn, dataset, workspace)
    client = conn.client
    names = {str(u.id): u.username for u in client.users}
    records, answers = [], []
    for rec in ds.records(with_responses=True, with_suggestions=False):
        md = rec.metadata
        if "chosen_side" not in md:
            raise ReviewError(f"record {rec.id} of dataset {dataset!r} has no chosen_side metadata: this dataset was "
                              "not made by `alfa review push`")
        records.append({"pair_id": rec.id, "attribute": md["attribute"], "pair_type": md["pair_type"],
                        "chosen_side": md["chosen_side"], "record_status": str(rec.status)})
        by_user: dict[str, dict] = {}
        for resp in rec.responses:
            user = names.get(str(resp.user_id), str(resp.user_id))
            entry = by_user.setdefault(user, {"pair_id": rec.id, "annotator": user, "status": resp.status.value,
                                              "better": None, "differ_only_in_attribute": None, "problems": [],
                                              "comment": None})
            entry[resp.question_name] = resp.value
        answers.extend(by_user.values())
    answer_schema = {"pair_id": pl.String, "annotator": pl.String, "status": pl.String, "better": pl.String,
                     "differ_only_in_attribute": pl.String, "problems": pl.List(pl.String), "comment": pl.String}
    record_schema = {"pair_id": pl.String, "attribute": pl.String, "pair_type": pl.String,
                     "chosen_side": pl.String, "record_status": pl.String}
    return (pl.DataFrame(records, schema=record_schema),
            pl.DataFrame([{k: a[k] for k in answer_schema} for a in answers], schema=answer_schema))


# ---------------------------------------------------------------- status

def review_status(conn: Connection, dataset: str = DEFAULT_DATASET, workspace: str = DEFAULT_WORKSPACE,
                  min_submitted: int | None = None) -> dict:
    """Progress per annotator (submitted / draft / discarded) and per stratum (records with enough answers)."""
    records, answers = fetch(conn, dataset, workspace)
    if min_submitted is None:
        min_submitted = open_dataset(conn, dataset, workspace).settings.distribution.min_submitted
    per_annotator = (answers.group_by("annotator").agg(
        [(pl.col("status") == s).sum().alias(s) for s in ("submitted", "draft", "discarded")]).sort("annotator"))
    submitted = answers.filter(pl.col("status") == "submitted").group_by("pair_id").len("answers")
    per_stratum = (records.join(submitted, on="pair_id", how="left").with_columns(pl.col("answers").fill_null(0))
                   .group_by("attribute", "pair_type").agg(
                       pl.len().alias("records"), (pl.col("answers") >= 1).sum().alias("started"),
                       (pl.col("answers") >= min_submitted).sum().alias("done"))
                   .sort("attribute", "pair_type"))
    client = conn.client
    members = {u.username for u in client.workspaces(workspace).users}
    no_access = sorted(u.username for u in client.users if u.role == "annotator" and u.username not in members)
    return {"records": records.height, "min_submitted": min_submitted, "per_annotator": per_annotator,
            "per_stratum": per_stratum, "annotators_without_access": no_access}


# ---------------------------------------------------------------- pull

@dataclass
class ReviewPolicy:
    """What a human verdict does to a pair in the reviewed dataset."""

    on_reversed: str = "drop"      # drop | flip: humans preferred the pipeline's rejected question
    on_tie: str = "drop"           # drop | keep: humans saw no difference on the attribute
    on_split: str = "keep"         # keep | drop: annotators disagreed and no label won
    drop_confounded: bool = True   # drop when most reviewers said the two differ in more than the attribute
    flag_quorum: int = 1           # drop when at least this many reviewers ticked a problem

    def __post_init__(self):
        for key, allowed in (("on_reversed", ("drop", "flip")), ("on_tie", ("drop", "keep")),
                             ("on_split", ("keep", "drop"))):
            if getattr(self, key) not in allowed:
                raise ReviewError(f"{key}={getattr(self, key)!r}: choose one of {', '.join(allowed)}")


def verdicts(records: pl.DataFrame, answers: pl.DataFrame, policy: ReviewPolicy) -> pl.DataFrame:
    """One row per record with at least one submitted answer: the majority verdict and what it does."""
    side = dict(zip(records["pair_id"], records["chosen_side"]))
    rows = []
    for (pair_id,), group in answers.filter(pl.col("status") == "submitted").group_by("pair_id", maintain_order=True):
        relative = [relative_label(b, side[pair_id]) for b in group["better"]]
        verdict = majority(relative)
        only_answers = group["differ_only_in_attribute"].drop_nulls().to_list()
        only = majority(only_answers) if only_answers else None
        problem_lists = [ps or [] for ps in group["problems"].to_list()]
        flags = sorted({p for ps in problem_lists for p in ps})
        flaggers = sum(1 for ps in problem_lists if ps)
        if flaggers >= policy.flag_quorum:
            action, reason = "drop", "problem: " + ",".join(flags)
        elif policy.drop_confounded and only == "no":
            action, reason = "drop", "differs in more than the attribute"
        elif verdict == AGREE:
            action, reason = "keep", "humans agree"
        elif verdict == REVERSED:
            action, reason = ("flip" if policy.on_reversed == "flip" else "drop"), "humans preferred the rejected side"
        elif verdict == TIE:
            action, reason = policy.on_tie, "humans saw no difference"
        else:
            action, reason = policy.on_split, "annotators disagreed"
        rows.append({"pair_id": pair_id, "review_verdict": verdict, "review_action": action, "review_reason": reason,
                     "review_answers": group.height, "review_annotators": sorted(group["annotator"]),
                     "review_votes": ",".join(relative), "review_problems": flags, "review_differ_only": only})
    schema = {"pair_id": pl.String, "review_verdict": pl.String, "review_action": pl.String,
              "review_reason": pl.String, "review_answers": pl.Int64, "review_annotators": pl.List(pl.String),
              "review_votes": pl.String, "review_problems": pl.List(pl.String), "review_differ_only": pl.String}
    return pl.DataFrame(rows, schema=schema)


def agreement_report(records: pl.DataFrame, answers: pl.DataFrame, decided: pl.DataFrame) -> dict:
    """Pipeline vs humans per attribute x pair type, and annotators among themselves."""
    per_cell = []
    joined = decided.join(records, on="pair_id")
    for (attribute, pair_type), g in joined.group_by("attribute", "pair_type", maintain_order=True):
        counts = {v: int((g["review_verdict"] == v).sum()) for v in (AGREE, REVERSED, TIE, SPLIT)}
        per_cell.append({"attribute": attribute, "pair_type": pair_type, "reviewed": g.height, **counts,
                         "agreement": counts[AGREE] / g.height})
    per_cell.sort(key=lambda r: (r["attribute"], r["pair_type"]))
    submitted = answers.filter(pl.col("status") == "submitted")
    between = {}
    for question in ("better", "differ_only_in_attribute"):
        units: dict[str, dict[str, str]] = {}
        for row in submitted.select("pair_id", "annotator", question).drop_nulls().iter_rows():
            units.setdefault(row[0], {})[row[1]] = row[2]
        between[question] = annotator_agreement(units)
    overall = int((decided["review_verdict"] == AGREE).sum())
    return {"records": records.height, "reviewed": decided.height,
            "pipeline_vs_humans": {"agree": overall, "reviewed": decided.height,
                                   "agreement": overall / decided.height if decided.height else None,
                                   "by_attribute_and_pair_type": per_cell},
            "between_annotators": between,
            "actions": {a: int((decided["review_action"] == a).sum()) for a in ("keep", "flip", "drop")}}


def apply_review(pairs_dir: Path, out_dir: Path, decided: pl.DataFrame, answers: pl.DataFrame, report: dict,
                 source: str) -> dict:
    """Write the reviewed dataset: every pair of PAIRS_DIR, each saying who decided it. Dropped pairs go to
    review/dropped.parquet with their reason; flipped pairs swap chosen and rejected."""
    pairs_dir, out_dir = Path(pairs_dir), Path(out_dir)
    if out_dir.resolve() == pairs_dir.resolve():
        raise ReviewError("write the reviewed dataset to a new folder (-o), so the pipeline's version stays as it was")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in pairs_dir.iterdir():  # the pipeline's reports and plots travel with the data
        if item.name in ("data", "hf_dataset", "review", "README.md"):
            continue
        (shutil.copytree(item, out_dir / item.name, dirs_exist_ok=True) if item.is_dir()
         else shutil.copy2(item, out_dir / item.name))
    pairs = load_pairs(pairs_dir).join(decided, on="pair_id", how="left").with_columns(
        pl.col("review_action").fill_null("keep"),
        pl.when(pl.col("review_verdict").is_null()).then(pl.lit("pipeline"))
          .otherwise(pl.lit("humans: ") + pl.col("review_annotators").list.join(",")).alias("decided_by"),
        pl.col("review_verdict").fill_null("unreviewed"))
    flip = pl.col("review_action") == "flip"
    swapped = {a: pl.when(flip).then(pl.col(b)).otherwise(pl.col(a)) for a, b in (
        ("chosen", "rejected"), ("rejected", "chosen"),
        ("chosen_similarity", "rejected_similarity"), ("rejected_similarity", "chosen_similarity"))}
    pairs = pairs.with_columns(**swapped)
    (out_dir / "data").mkdir(exist_ok=True)
    (out_dir / "review").mkdir(exist_ok=True)
    kept = pairs.filter(pl.col("review_action") != "drop")
    for split in SPLITS:
        kept.filter(pl.col("split") == split).write_parquet(out_dir / "data" / f"{split}.parquet")
    pairs.filter(pl.col("review_action") == "drop").write_parquet(out_dir / "review" / "dropped.parquet")
    answers.write_parquet(out_dir / "review" / "answers.parquet")
    report = {**report, "source": source, "pairs_in": pairs.height, "pairs_out": kept.height,
              "flipped": int(kept["review_action"].eq("flip").sum()),
              "dropped": pairs.height - kept.height}
    (out_dir / "review_report.json").write_text(json.dumps(report, indent=2))
    return report


def pull(conn: Connection, pairs_dir: Path, out_dir: Path, dataset: str = DEFAULT_DATASET,
         workspace: str = DEFAULT_WORKSPACE, policy: ReviewPolicy | None = None) -> dict:
    policy = policy or ReviewPolicy()
    records, answers = fetch(conn, dataset, workspace)
    unknown = set(records["pair_id"]) - set(load_pairs(pairs_dir)["pair_id"])
    if unknown:
        raise ReviewError(f"{len(unknown)} records of dataset {dataset!r} are not pairs of {pairs_dir} (e.g. "
                          f"{sorted(unknown)[0]}): pull into the pairs dir they were pushed from")
    decided = verdicts(records, answers, policy)
    report = agreement_report(records, answers, decided)
    report["policy"] = policy.__dict__
    return apply_review(pairs_dir, out_dir, decided, answers, report,
                        source=f"Argilla {conn.url}, workspace {workspace}, dataset {dataset}")
