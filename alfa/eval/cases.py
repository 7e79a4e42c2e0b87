"""Interactive-diagnosis cases as they are published, read into one shape, and the checks that say whether a
case set can be trusted (`alfa eval cases`).

Layouts read (JSON Lines, one case a line):
- MediQ: `id`, `question`, `options` {A..}, `answer_idx`, `context` (case facts, the first is the chief
  complaint), `atomic_facts` (what the simulated patient may reveal). List fields may be JSON lists or
  strings holding a Python-style list (as some published files have them).
- CRAFT-MD: the same with `facts` in place of `atomic_facts`.
- ALFA's published MediQ-AskDocs file, as it is: as MediQ, with `options` a string holding a Python dict,
  `atomic_facts` a string holding a Python list, `context` the post as plain text (which may begin "[34/m] ..." and
  is then no list), `initial_info` (what the expert sees first) and the source post as `original_post` (or `post`).
- Word problems (`alfa tasks gsm8k`): no `options`, `answer` a number; the expert answers with the number.
- Any of them may mark its `decisive_fact` (an index into the facts, or the fact's text): the fact without which the
  case cannot be answered. The published files mark none; an evaluation then reports no decisive-fact figure.

A case that cannot be read is rejected with its file, line and field; the others are kept.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from alfa.dialogue.parsing import number_text


@dataclass
class Case:
    case_id: str
    question: str
    options: dict[str, str]
    answer: str  # the correct option letter, or the number of a case without options ("29")
    context: list[str]  # every case fact, in order; the first is the chief complaint
    facts: list[str]  # what the simulated patient may reveal
    initial_info: str  # what the expert sees before asking anything
    post: str | None = None  # the source post, for cases made from one
    decisive_fact: int | None = None  # index into `facts` of the fact the answer hinges on, where the file says
    source: dict = field(default_factory=dict)  # file and line


def _as_list(value, where: str, plain_text_ok: bool = False) -> list[str]:
    """A list of strings from a JSON list or a string holding a Python-style list. With `plain_text_ok` a string
    that is no list ("[34/m] I have had ...") is one item; otherwise it is an error."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)  # a Python-style list in a string, as some published files have
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
            if not plain_text_ok:
                raise ValueError(f"{where}: a string that looks like a list but is not one")
        return [text] if text else []
    raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")


def _options(value, where: str) -> dict[str, str]:
    """Letter -> text from an object or a string holding a Python dict; {} where the case has none."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            value = None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: field 'options' must be an object of letter -> text (or a string holding one)")
    return {str(k).upper(): str(v) for k, v in value.items()}


def read_case(obj: dict, path: Path, line: int) -> Case:
    where = f"{path}:{line}"
    for key in ("question", "context"):
        if key not in obj:
            raise ValueError(f"{where}: field '{key}' is missing")
    options = _options(obj.get("options"), where)
    if options:
        if "answer_idx" not in obj:
            raise ValueError(f"{where}: field 'answer_idx' is missing")
        answer = str(obj["answer_idx"]).strip().upper()
        if answer not in options:
            raise ValueError(f"{where}: field 'answer_idx' is {answer!r}, not one of the options {sorted(options)}")
    else:  # a word problem: the answer is a number
        answer = number_text(obj.get("answer", ""))
        if answer is None:
            raise ValueError(
                f"{where}: the case has no options, so field 'answer' must be a number, got {obj.get('answer')!r}"
            )
    context = _as_list(obj["context"], f"{where}: field 'context'", plain_text_ok=True)
    facts_key = "atomic_facts" if "atomic_facts" in obj else "facts" if "facts" in obj else None
    facts = _as_list(obj[facts_key], f"{where}: field '{facts_key}'") if facts_key else context
    if not context:
        raise ValueError(f"{where}: field 'context' is empty: the case has no chief complaint")
    facts = [re.sub(r"^\d+\.\s*", "", f) for f in facts]  # "3. The man denied ..." -> "The man denied ..."
    return Case(
        case_id=str(obj.get("id", line)),
        question=str(obj["question"]),
        options=options,
        answer=answer,
        context=context,
        facts=facts,
        initial_info=str(obj.get("initial_info") or context[0]),
        post=obj.get("post") or obj.get("original_post"),
        decisive_fact=_decisive(obj.get("decisive_fact"), facts, where),
        source={"file": str(path), "line": line},
    )


def _decisive(value, facts: list[str], where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(facts):
        return value
    if isinstance(value, str) and value.strip() in [f.strip() for f in facts]:
        return [f.strip() for f in facts].index(value.strip())
    raise ValueError(
        f"{where}: field 'decisive_fact' must be an index into the facts (0..{len(facts) - 1}) or one fact's text"
    )


def load_cases(path: Path, limit: int | None = None, skip: int = 0) -> tuple[list[Case], list[dict]]:
    """(cases, rejects): every line that is not a readable case is a reject with file, line and reason. `skip`
    leaves out the first readable cases (those a method built its training data from, `--limit` there), `limit`
    keeps the next ones."""
    cases, rejects, first_line, skipped = [], [], {}, 0
    with open(path, "rb") as f:
        for n, raw_bytes in enumerate(f, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as e:  # one bad line is one reject, not the end of the file
                rejects.append(
                    {"file": str(path), "line": n, "reason": f"{path}:{n}: not UTF-8 ({e.reason} at byte {e.start})"}
                )
                continue
            if not raw.strip():
                continue
            try:
                case = read_case(json.loads(raw), Path(path), n)
                if case.case_id in first_line:  # episodes, caches and pairs are keyed by the id
                    raise ValueError(
                        f"{path}:{n}: field 'id' is {case.case_id!r}, the id of line {first_line[case.case_id]}"
                    )
                first_line[case.case_id] = n
                if skipped < skip:
                    skipped += 1
                    continue
                cases.append(case)
            except json.JSONDecodeError as e:
                rejects.append({"file": str(path), "line": n, "reason": f"not JSON: {e.msg}"})
            except ValueError as e:
                rejects.append({"file": str(path), "line": n, "reason": str(e)})
            if limit and len(cases) >= limit:
                break
    return cases, rejects


CASE_FIELDS = (
    "question, context (the facts; the first is what the patient says first), options + answer_idx or a numeric answer"
)


def no_case_message(path: Path, rejects: list[dict]) -> str:
    """Why a file gave no case, said once: the rejects' reasons counted, what the file looks like, what is expected."""
    if not rejects:
        return f"{path}: no readable case (the file is empty)"
    reasons = {}
    for r in rejects:
        reason = r["reason"].split(": ", 1)[-1] if r["reason"].startswith(str(path)) else r["reason"]
        reasons[reason] = reasons.get(reason, 0) + 1
    shown = "; ".join(f"{reason} ({n} lines)" for reason, n in sorted(reasons.items(), key=lambda x: -x[1])[:3])
    keys = _first_keys(path)
    looks = f" Its first row's fields: {', '.join(keys)}." if keys else ""
    if keys and {"question", "post"} <= set(keys) and "options" not in keys:
        looks += " It looks like a questions file (for `alfa ingest`), not interactive cases."
    return f"{path}: no readable case: {shown}.{looks} A case is one JSON object per line with {CASE_FIELDS}."


def _first_keys(path: Path) -> list[str]:
    with open(path, "rb") as f:
        for raw in f:
            try:
                obj = json.loads(raw)
            except ValueError:
                return []
            return sorted(obj) if isinstance(obj, dict) else []
    return []


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{4,}", text.lower())}


def grounding(initial_info: str, post: str) -> float:
    """Share of the initial info's content words (4+ letters) that occur in the post."""
    words = _words(initial_info)
    return len(words & _words(post)) / len(words) if words else 0.0


def check_cases(cases: list[Case], ungrounded_below: float = 0.2) -> dict:
    """What `alfa eval cases` prints: how often each letter is the answer, how often the longest option is,
    and, for cases with their source post, the initial infos that share almost nothing with their post."""
    n = len(cases)
    letters = Counter(c.answer for c in cases)
    with_options = [c for c in cases if c.options]
    longest = sum(max(c.options, key=lambda k: len(c.options[k])) == c.answer for c in with_options)
    report = {
        "n": n,
        "answer_letter_share": {k: round(v / n, 4) for k, v in sorted(letters.items())} if with_options else {},
        "longest_option_share": round(longest / len(with_options), 4) if with_options else None,
    }
    with_post = [c for c in cases if c.post]
    if with_post:
        bad = [c for c in with_post if grounding(c.initial_info, c.post) < ungrounded_below]
        report["ungrounded_initial_info"] = {
            "count": len(bad),
            "of": len(with_post),
            "examples": [{"case_id": c.case_id, "initial_info": c.initial_info[:200]} for c in bad[:5]],
        }
    return report


def warnings(report: dict) -> list[str]:
    """The case checks as warnings `alfa eval interactive` prints before it starts."""
    out = []
    shares = report["answer_letter_share"]
    if shares and max(shares.values()) > 0.5:
        letter = max(shares, key=shares.get)
        out.append(
            f"answer {letter} is right in {shares[letter]:.0%} of the cases: a model that always says it scores that"
        )
    if report["longest_option_share"] is not None and report["longest_option_share"] > 0.4:
        out.append(f"the longest option is the answer in {report['longest_option_share']:.0%} of the cases")
    ungrounded = report.get("ungrounded_initial_info")
    if ungrounded and ungrounded["count"]:
        out.append(
            f"{ungrounded['count']} of {ungrounded['of']} initial infos share almost nothing with their post "
            "(an invented chief complaint?): --initial-info post uses the post"
        )
    return out
