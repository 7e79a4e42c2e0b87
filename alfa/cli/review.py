"""`alfa review server | push | users | status | pull`: human review in Argilla (alfa.review)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_review(sub) -> None:
    """alfa review and its actions"""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser(
        "review",
        help="human spot-checks in Argilla: push pairs, add reviewers, pull verdicts",
        formatter_class=fmt,
        description="Blind A/B review of pairs by people (clinicians) in the "
        "Argilla web UI, and their verdicts back in the data. The server address and an owner's API "
        "key come from ARGILLA_API_URL and ARGILLA_API_KEY.",
        epilog='Examples:\n  alfa review server up && eval "$(alfa review server env)"\n'
        "  alfa review push runs/demo/pairs --sample 60 --stratify attribute,pair_type --min-submitted 2\n"
        "  alfa review users add dr_lee dr_okafor --workspace alfa\n"
        "  alfa review status\n"
        "  alfa review pull runs/demo/pairs -o runs/demo/reviewed && alfa card runs/demo/reviewed",
    )
    rsub = s.add_subparsers(dest="review_verb", required=True, metavar="ACTION")

    r = rsub.add_parser(
        "server",
        help="a local Argilla server (SQLite + noida-db), for trying it out and tests",
        formatter_class=fmt,
        description="Runs argilla-server 2.8.0 from its own virtualenv (created "
        "once in ~/.cache/alfa) on 127.0.0.1, with the Elasticsearch API and Redis served by the "
        "noida-db binary. For production use annotation/docker-compose.yaml.",
        epilog='Examples:\n  alfa review server up\n  eval "$(alfa review server env)"\n'
        "  alfa review server status\n  alfa review server down",
    )
    r.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="up: start (idempotent); down: stop what up started; status; env: export lines for a shell",
    )
    r.add_argument("--dir", default=".alfa-review", help="state folder: database, logs, pids, owner.json")
    r.add_argument("--port", type=int, help="port of the web UI and API (default: a free one)")
    r.add_argument("--venv", help="the server's virtualenv (default ~/.cache/alfa/argilla-server-venv)")
    r.set_defaults(func=_review_server)

    _add_review_actions(rsub, fmt)


def _connection(r) -> None:
    """The options every action that talks to Argilla takes."""
    r.add_argument("--api-url", help="Argilla URL (default: $ARGILLA_API_URL)")
    r.add_argument("--api-key-env", default="ARGILLA_API_KEY", help="variable holding the API key")
    r.add_argument("--dataset", default="alfa-review", help="Argilla dataset name")
    r.add_argument("--workspace", default="alfa", help="Argilla workspace")
    r.set_defaults(func=_review)


def _add_review_actions(rsub, fmt) -> None:
    """alfa review push | users | status | pull"""
    r = rsub.add_parser(
        "push",
        help="push a stratified sample of pairs as blind A/B records",
        formatter_class=fmt,
        description="Which side is the pipeline's choice is random per pair "
        "(the same on every push) and kept in metadata reviewers cannot see. Record ids are pair "
        "ids: pushing again adds only missing records, so an interrupted push resumes.",
    )
    r.add_argument("pairs_dir", help="the pairs dir to review")
    r.add_argument("--sample", type=int, help="number of pairs (default: all)")
    r.add_argument("--stratify", default="attribute,pair_type", help="columns whose cells share the sample evenly")
    r.add_argument(
        "--min-submitted",
        type=int,
        default=1,
        help="answers needed per record (overlap); 2+ gives agreement between annotators",
    )
    r.add_argument(
        "--suggestions", action="store_true", help="pre-fill the pipeline's choice (review is no longer blind)"
    )
    r.add_argument("--attributes", help="attribute pack for the definitions shown (default: the one the pairs used)")
    r.add_argument("--seed", type=int, default=0, help="seed of the sample and of each record's A/B sides")
    _connection(r)

    r = rsub.add_parser("users", help="create annotator accounts and add them to the workspace")
    r.add_argument("add", choices=["add"], help="the action (add is the one there is)")
    r.add_argument("usernames", nargs="+", help="one or more annotator user names")
    r.add_argument("--credentials", default="reviewers.csv", help="where new passwords go (mode 600)")
    _connection(r)

    r = rsub.add_parser("status", help="progress per annotator and per attribute x pair type")
    _connection(r)

    r = rsub.add_parser(
        "pull",
        help="verdicts, agreement figures and a reviewed copy of the pair dataset",
        formatter_class=fmt,
        description="Per pair: the majority of submitted answers (a 'tie' answer "
        "stays a tie; no majority is 'split'). Pairs with a problem ticked, or that differ in more than "
        "the attribute, are dropped; reversed and tied pairs as the options say. Every row of the "
        "reviewed dataset says who decided it (decided_by); dropped rows keep their reason.",
    )
    r.add_argument("pairs_dir", help="the pairs dir that was pushed")
    r.add_argument("-o", "--output", required=True, help="folder for the reviewed dataset")
    r.add_argument(
        "--on-reversed", choices=["drop", "flip"], default="drop", help="a pair reviewers reversed: drop it or flip it"
    )
    r.add_argument("--on-tie", choices=["drop", "keep"], default="drop", help="a pair reviewers called a tie")
    r.add_argument(
        "--on-split", choices=["keep", "drop"], default="keep", help="a pair with no majority among its answers"
    )
    r.add_argument(
        "--keep-confounded", action="store_true", help="keep pairs reviewers said differ in more than the attribute"
    )
    r.add_argument("--flag-quorum", type=int, default=1, help="reviewers who must tick a problem to drop a pair")
    _connection(r)


# --dir is read from the folder alfa runs in: the usual reason a running server is "not found".
NO_SERVER_HINT = (
    "no local server in {state_dir}: `alfa review server up` starts one there; a server started from another "
    "folder keeps its state in that folder's .alfa-review (give it with --dir)"
)


def _review_server(args) -> int:
    from alfa.review.server import owner_credentials, server_down, server_status, server_up

    state_dir = Path(args.dir).resolve()  # printed absolute, so the commands it prints work from any folder
    if args.action == "up":
        state = server_up(state_dir, port=args.port, venv=Path(args.venv) if args.venv else None)
        creds = owner_credentials(state_dir)
        print(
            f"Argilla is running: {state.url}\n"
            f"  web UI login: {creds['username']} (owner); password and API key in {state_dir / 'owner.json'} "
            "(readable by you only)\n"
            f'  for alfa review push/pull/status: eval "$(alfa review server env --dir {state_dir})"\n'
            f"  logs: {state_dir / 'logs'}; stop with: alfa review server down --dir {state_dir}"
        )
    elif args.action == "down":
        stopped = server_down(state_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        status = server_status(state_dir)
        print(json.dumps({"state_dir": str(state_dir), **status}, indent=2))
        if not state_dir.is_dir():
            print(NO_SERVER_HINT.format(state_dir=state_dir), file=sys.stderr)
        return 0 if status["running"] else 1
    else:  # env: for eval in a shell; it prints the key, so never paste its output anywhere
        state = server_status(state_dir)
        if "url" not in state:
            raise RuntimeError(NO_SERVER_HINT.format(state_dir=state_dir))
        print(
            f"export ARGILLA_API_URL={state['url']}\nexport ARGILLA_API_KEY={owner_credentials(state_dir)['api_key']}"
        )
    return 0


def _review(args) -> int:
    import polars as pl

    from alfa.review.connection import connect
    from alfa.review.pull import ReviewPolicy, pull, review_status
    from alfa.review.push import push
    from alfa.review.users import add_users

    conn = connect(args.api_url, args.api_key_env)
    if args.review_verb == "push":
        result = push(
            conn,
            Path(args.pairs_dir),
            args.sample,
            tuple(filter(None, args.stratify.split(","))),
            args.dataset,
            args.workspace,
            args.min_submitted,
            args.suggestions,
            args.attributes,
            args.seed,
        )
        print(
            f"{result.pushed} records pushed, {result.already_there} were already there "
            f"({result.sampled} sampled) -> {result.url}, workspace {result.workspace}, dataset {result.dataset}"
        )
    elif args.review_verb == "users":
        for u in add_users(conn, args.usernames, args.workspace, Path(args.credentials)):
            print(
                f"{u['username']}: {u['role']} in workspace {u['workspace']}"
                + (f" (new; password in {args.credentials}: hand it over privately)" if u["password"] else "")
            )
    elif args.review_verb == "status":
        status = review_status(conn, args.dataset, args.workspace)
        with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True):
            print(f"{status['records']} records; a record is done with {status['min_submitted']} submitted answer(s)")
            print(status["per_stratum"])
            print(status["per_annotator"])
        if status["annotators_without_access"]:
            print(
                f"annotators without access to workspace {args.workspace}: "
                f"{', '.join(status['annotators_without_access'])} "
                f"(add them: alfa review users add NAME --workspace {args.workspace})"
            )
    else:  # pull
        policy = ReviewPolicy(args.on_reversed, args.on_tie, args.on_split, not args.keep_confounded, args.flag_quorum)
        report = pull(conn, Path(args.pairs_dir), Path(args.output), args.dataset, args.workspace, policy)
        pvh = report["pipeline_vs_humans"]
        alpha = report["between_annotators"]["better"]["krippendorff_alpha"]
        print(
            f"{report['reviewed']} of {report['records']} records reviewed; humans agree with the pipeline on "
            f"{pvh['agree']} of {pvh['reviewed']}"
            + (f" ({pvh['agreement']:.0%})" if pvh["reviewed"] else "")
            + f"; Krippendorff's alpha between annotators: {'n/a' if alpha is None else f'{alpha:.2f}'}"
        )
        print(
            f"reviewed dataset -> {args.output}: {report['pairs_out']} of {report['pairs_in']} pairs kept, "
            f"{report['flipped']} flipped, {report['dropped']} dropped (review/dropped.parquet); "
            f"then: alfa card {args.output}"
        )
    return 0
