"""`detcheck verify`: is this endpoint serving the reference's model? Both sides answer the same
prompts (one token, top logprobs, temperature 0, a seed), each alone and batched (every prompt
in flight at once), in rounds; the reference's own variation across those conditions is what a
difference must exceed (detcheck.analysis.verify), so batching noise is never called another
model. Every answer is stored as ordinary runs under -o DIR/<verification id>/{reference,
candidate}/; a later `verify --reference DIR/<verification id>` reuses the stored reference
side without calling it (monitoring without a live reference).

Rounds stop as soon as the candidate is shown to differ (each look at alpha / rounds, so the
chance of a false `differs` over all looks stays within alpha); a candidate that is the same
model needs every round to be told `identical` or `consistent`."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from detcheck.analysis import verify as judge
from detcheck.commands.costs import check_spend, total_spend
from detcheck.config import strip_credentials
from detcheck.errors import DetcheckError, EndpointError, Interrupted, UsageError, reworded

Log = Callable[[str], None]

VERIFY_VERSION = 1
STATE = "_verify.json"
ROUNDS = 3
SIDES = ("reference", "candidate")
CONDITIONS = ("alone", "batched")

# Short prompts of many kinds (facts, arithmetic, code, lists, languages, formats, stories):
# each answer's first token has a spread of likely tokens worth comparing. They read the same
# as a chat message and as a completions prompt.
DEFAULT_PROMPTS = (
    ("capital", "The capital of France is"),
    ("arithmetic", "2 + 2 ="),
    ("opposite", "The opposite of hot is"),
    ("freezing", "Water freezes at a temperature of"),
    ("sky", "On a clear day the sky is"),
    ("python", "def fibonacci(n):"),
    ("list", "Three primary colors are red,"),
    ("french", "Translate to French: Good morning ->"),
    ("json", '{"name": "Alice", "age":'),
    ("story", "Once upon a time, in a small village,"),
    ("planet", "The largest planet in our solar system is"),
    ("recipe", "To make a cup of tea, first"),
    ("animal", "The fastest land animal is the"),
    ("count", "One, two, three, four,"),
    ("question", "Q: What is the boiling point of water?\nA:"),
    ("email", "Dear hiring manager,"),
    ("sql", "SELECT name FROM users WHERE"),
    ("poem", "Roses are red, violets are"),
    ("weekday", "The day after Monday is"),
    ("science", "Photosynthesis converts sunlight into"),
    ("history", "The first person to walk on the Moon was"),
    ("math", "The square root of 81 is"),
    ("advice", "The best way to learn a language is"),
    ("greeting", "Hello! How are"),
)


def verify_command(options, log: Log, *, reference: str, reference_model: str | None = None,
                   reference_key_env: str | None = None, prompts_path: Path | None = None,
                   alpha: float = judge.ALPHA, rounds: int = ROUNDS) -> dict:  # fmt: skip
    """Verify `options`' endpoint (the candidate) against `reference`: a base URL, or the
    directory an earlier verification wrote. Returns the verification as data (what --json
    prints); a dry run, what it would send and cost."""
    from detcheck import spec
    from detcheck.commands.generate import load_prompts
    from detcheck.send.runner import sigterm_as_interrupt
    from detcheck.store import RunLock
    from detcheck.store.runs import new_run_id

    if options.replay is not None or options.resume is not None:
        raise UsageError("verify calls both endpoints: it takes no --replay or --resume")
    if options.via == "batch":
        raise UsageError("verify measures online batching: it takes no --via batch")
    if not 0 < alpha < 0.5:
        raise UsageError(f"--alpha must be between 0 and 0.5, got {alpha}")
    given_n = options.n if options.n is not None else spec.default("n", "verify")
    alone, batched = sizes_of(given_n, rounds)
    n = (alone + batched) * rounds  # what is sent per prompt and side: whole rounds
    if n != given_n:
        log(f"--n {given_n}: {n} calls per prompt and side ({rounds} rounds of {alone + batched})")
    in_flight = options.concurrency
    if in_flight is None:
        in_flight = spec.default("concurrency", "verify")
    if in_flight < 2:
        raise UsageError(f"--concurrency must be at least 2 (the batched answers), got {in_flight}")
    top_k = options.value("top_logprobs")
    if top_k is None or top_k < 1:
        raise UsageError(f"verify compares top logprobs: --top-logprobs must be at least 1, "
                         f"got {top_k}")  # fmt: skip
    if "://" in str(options.out or ""):  # an object store, file://: before Path() mangles it
        raise UsageError("verify writes its runs to a local directory: -o takes a path")
    out = Path(options.out or spec.default("out"))
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: not a directory (the verification's directory goes under it)")
    prompts = load_prompts(prompts_path) if prompts_path else list(DEFAULT_PROMPTS)
    stored = None if _is_url(reference) else stored_reference(Path(reference))
    if stored is not None:
        prompts = _stored_prompts(stored, prompts, prompts_path)
    least = _least_prompts(alpha / rounds)
    if len(prompts) < least:
        raise UsageError(
            f"{len(prompts)} prompts can never show a difference at --alpha {alpha:g} (each of "
            f"{rounds} looks at {alpha / rounds:.3g}: even every prompt moving is not enough): "
            f"give at least {least}"
        )
    from detcheck.commands.endpoints import checked

    common = {"temperature": 0.0, "max_tokens": 1, "kind": "flip", "concurrency": 1}
    # each side's base URL as it will be called, and its model (a local server's only one)
    candidate = _side("candidate", lambda: checked(replace(options, **common), log))
    sides = {"candidate": candidate}
    if stored is None:
        sides["reference"] = _side("reference", lambda: checked(replace(
            candidate, base_url=reference, model=reference_model or options.model,
            key_env=reference_key_env or options.key_env,
        ), log))  # fmt: skip
    if not options.dry_run:  # a missing key is said before anything is made or sent
        from detcheck.commands.endpoints import require_key

        for name, side in sides.items():
            _side(name, lambda side=side: require_key(side))
    state = {"verify_version": VERIFY_VERSION, "verify_id": new_run_id("verify")}
    root = out / state["verify_id"]
    spend = _spend(sides, prompts, n)
    if options.dry_run:
        return {**spend, "reference_stored": str(stored) if stored else None}
    check_spend(spend, options.max_cost, options.confirm)
    try:
        root.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"-o {out}: cannot create {root.name} ({exc.strerror or exc})") from None
    lock = RunLock(root)
    try:
        state["settings"] = {
            "candidate": _described(candidate),
            "reference": _described(sides["reference"]) if stored is None else None,
            "reference_stored": str(stored) if stored is not None else None,
            "prompts": [{"id": p, "prompt": text} for p, text in prompts],
            "n": n, "rounds": rounds, "alone_per_round": alone, "batched_per_round": batched,
            "concurrency": in_flight, "alpha": alpha,
        }  # fmt: skip
        state["status"] = "running"
        _save(root, state)
        try:
            with sigterm_as_interrupt():  # between phases too: said, and the state saved
                return _rounds(state, root, sides, prompts, stored, log,
                               sizes=(alone, batched, in_flight))  # fmt: skip
        except KeyboardInterrupt:
            state["status"] = "interrupted"
            _save(root, state)
            raise Interrupted(f"interrupted: what arrived is kept in {root}") from None
    finally:
        lock.release()


def _least_prompts(level: float) -> int:
    """The fewest prompts whose every one moving (the reference's own halves none) is a
    difference at `level`: fewer can never give `differs`."""
    k = 1
    while judge.fisher_greater(k, 0, k) >= level:
        k += 1
    return k


def _side(name: str, make):
    """A side's options (its URL checked, its model chosen); an error names the side."""
    try:
        return make()
    except DetcheckError as exc:
        said = str(exc)
        if name == "reference":  # its URL was given as --reference
            said = said.replace("--base-url", "--reference")
        raise reworded(exc, f"the {name}: {said}") from None


def dir_name(prompt_id: str) -> str:
    """A prompt's directory under its side: its id where that is a plain name, else a name
    made of it (an id from a file may hold "/" or "..")."""
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", prompt_id):
        return prompt_id
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", prompt_id).strip(".-")[:40] or "prompt"
    return f"{plain}-{hashlib.sha256(prompt_id.encode()).hexdigest()[:8]}"


def sizes_of(n: int, rounds: int) -> tuple[int, int]:
    """Calls per prompt per round: (alone, batched), a third alone, at least one each."""
    per_round = n // rounds
    if per_round < 2:
        raise UsageError(
            f"verify needs --n of at least {2 * rounds} (one call alone and one batched per "
            f"prompt in each of {rounds} rounds), got {n}"
        )
    alone = max(1, per_round // 3)
    return alone, per_round - alone


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _described(options) -> dict:
    return {
        "base_url": strip_credentials(options.value("base_url")),
        "model": options.value("model"),
        "api": options.value("api"),
        "top_logprobs": options.value("top_logprobs"),
        "seed": options.value("seed"),
    }


def _save(root: Path, state: dict) -> None:
    from detcheck.store.files import _write_atomic

    _write_atomic(root / STATE, (json.dumps(state, indent=2) + "\n").encode())


def stored_reference(path: Path) -> Path:
    """The verification whose reference side a new one reuses: `path` itself, or the newest
    complete verification directly under it."""
    if (path / STATE).is_file():
        found = path
    elif path.is_dir():
        done = []
        for p in path.iterdir():
            if not (p / STATE).is_file():
                continue
            state = _state(p)
            if state.get("status") == "complete" and state["settings"].get("reference"):
                done.append(((p / STATE).stat().st_mtime, p.name, p))  # the newest to end
        if not done:
            raise UsageError(
                f"--reference {path}: neither a base URL (http://...) nor a directory that "
                "`detcheck verify -o` wrote with a complete verification"
            )
        found = max(done)[2]
    else:
        raise UsageError(
            f"--reference {path}: no such directory (give a base URL, http://..., or a directory "
            "that `detcheck verify -o` wrote)"
        )
    state = _state(found)
    if state.get("status") != "complete":
        raise UsageError(
            f"--reference {found}: that verification did not finish ({state.get('status')}): "
            "its reference side may lack rounds; give a complete one"
        )
    if not state["settings"].get("reference"):
        raise UsageError(f"--reference {found}: its own reference was a stored one, not measured")
    if not (found / "reference").is_dir():
        raise UsageError(f"--reference {found}: its reference side is missing")
    return found


def _state(path: Path) -> dict:
    """A stored verification's state, checked for what a reuse reads."""
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path / STATE}: cannot read it ({exc})") from None
    settings = state.get("settings") if isinstance(state, dict) else None
    prompts = settings.get("prompts") if isinstance(settings, dict) else None
    if not (isinstance(prompts, list) and all(
        isinstance(p, dict) and isinstance(p.get("id"), str) and isinstance(p.get("prompt"), str)
        for p in prompts
    )):  # fmt: skip
        raise UsageError(f"{path / STATE}: not a verification detcheck wrote (no settings with "
                         "its prompts)")  # fmt: skip
    return state


def _stored_prompts(stored: Path, prompts, prompts_path) -> list[tuple[str, str]]:
    """The stored reference's prompts: a new verification asks the candidate the same."""
    theirs = [(p["id"], p["prompt"]) for p in _state(stored)["settings"]["prompts"]]
    if prompts_path is not None and prompts != theirs:
        raise UsageError(
            f"--prompts {prompts_path}: the stored reference {stored} answered other prompts; "
            "leave --prompts out to use its own"
        )
    return theirs


def _spend(sides: dict, prompts, n: int) -> dict:
    """Every request of every side, priced once before anything is sent (each side at its
    model's list price)."""
    from detcheck.commands.flip import flip_command

    spends = [
        flip_command(replace(side, prompt=text, n=n, dry_run=True), _silent)[0]
        for side in sides.values()
        for _, text in prompts
    ]
    reference = sides.get("reference")
    return total_spend(
        spends, prompts=len(prompts), sides=list(sides),
        # half of it goes to the reference: the plan names it too
        reference_endpoint=strip_credentials(reference.value("base_url")) if reference else None,
        reference_model=reference.value("model") if reference else None,
    )  # fmt: skip


def _silent(_: str) -> None:
    pass


def _rounds(state, root, sides, prompts, stored, log, *, sizes) -> dict:
    """Send the rounds, looking after each; the verification as data."""
    from detcheck.commands.flip import execute_many

    settings = state["settings"]
    rounds, alpha = settings["rounds"], settings["alpha"]
    alone, batched, in_flight = sizes
    base = {name: _side_options(side, name) for name, side in sides.items()}
    hint = f"what arrived is kept in {root}"
    result: dict = {}
    seen: dict = {}  # each finished run's answers, read once
    for k in range(1, rounds + 1):
        for name in SIDES if k % 2 else SIDES[::-1]:  # who goes first alternates
            if name not in base:
                continue
            for condition, calls, limit in (("alone", alone, 1), ("batched", batched, in_flight)):
                log(f"--- round {k} of {rounds}: {name}, {condition} ({calls} x {len(prompts)})")
                options = [  # a prompt's runs in a directory of its own: analyze reads it
                    replace(
                        base[name],
                        prompt=text,
                        n=calls,
                        out=str(root / name / dir_name(prompt_id)),
                        tags=_tags(state, name, condition, k, prompt_id),
                    )  # fmt: skip
                    for prompt_id, text in prompts
                ]
                try:
                    execute_many(options, log, in_flight=limit)
                except Interrupted:
                    state["status"] = "interrupted"
                    _save(root, state)
                    raise Interrupted(f"interrupted: {hint}") from None
                except DetcheckError as exc:  # a side down: exit 3, naming which
                    first = str(exc).splitlines()[0]
                    raise reworded(exc, f"the {name}: {first} ({hint})") from None
        result = _look(state, root, stored, alpha / rounds, seen)
        log(f"round {k}: {result['verdict']} (p = {result['p_value']:.3g}, "
            f"{result['moved_prompts']} of {result['prompts']} prompts moved)")  # fmt: skip
        if result["verdict"] == judge.DIFFERS:
            break
    state.update(status="complete", **result, out=str(root))
    _save(root, state)
    return state


def _side_options(options, side: str):
    from detcheck.send.pace import pacer_for

    # --rpm holds for the side as a whole: every run of it (all prompts, every round) shares
    # one pacer
    return replace(options, max_cost=None, confirm=None, dry_run=False, progress=False,
                   measurement=f"verify {side}", pacer=pacer_for(options.rpm))  # fmt: skip


def _tags(state: dict, side: str, condition: str, round_: int, prompt_id: str) -> dict:
    return {
        "verify_id": state["verify_id"], "verify_side": side, "verify_condition": condition,
        "verify_round": round_, "prompt_set": f"{state['verify_id']}-{side}",
        "prompt_id": prompt_id,
    }  # fmt: skip


def _look(state: dict, root: Path, stored: Path | None, alpha: float, seen: dict) -> dict:
    """The verdict on every answer so far (a stored reference: all of its answers)."""
    reference = answers_of(stored / "reference" if stored else root / "reference", seen)
    candidate = answers_of(root / "candidate", seen)
    for name, answers in (("reference", reference), ("candidate", candidate)):
        if not any(answers.values()):  # every answer without top logprobs: nothing to compare
            raise EndpointError(
                f"the {name}: no answer carried top logprobs (asked for "
                f"{state['settings']['candidate']['top_logprobs']}): it cannot be verified "
                f"({_runs_hint(root)})"
            )
    found = judge.verdict(reference, candidate, alpha)
    found["calls"] = {
        "reference": 0 if stored else _count(reference),
        "candidate": _count(candidate),
    }
    found["reference_calls_stored"] = _count(reference) if stored else None
    return found


def _runs_hint(root: Path) -> str:
    return f"what arrived is kept in {root}"


def _count(answers: dict) -> int:
    return sum(len(a) for a in answers.values())


def answers_of(side_dir: Path, seen: dict | None = None) -> dict[str, list[judge.Answer]]:
    """Every answer a side's runs hold, by prompt id, in order of round and call. `seen`
    keeps what each run held at an earlier look (a finished run does not change)."""
    from detcheck.store import find_runs

    seen = {} if seen is None else seen
    out: dict[str, list] = {}
    if not side_dir.is_dir():
        return out
    for run_dir in find_runs(side_dir):
        if run_dir not in seen:
            seen[run_dir] = _run_answers(run_dir)
        prompt_id, answers = seen[run_dir]
        out.setdefault(prompt_id, []).extend(answers)
    for answers in out.values():
        answers.sort(key=lambda a: a.order)
    return out


def _run_answers(run_dir: Path) -> tuple[str, list[judge.Answer]]:
    from detcheck.store import read_run

    run = read_run(run_dir, columns=["ok", "call", "top_logprobs", "raw_body"])
    tags = run.meta.get("tags") or {}
    table = run.table.filter(run.table.column("ok")).sort_by("call")
    base = int(tags.get("verify_round") or 0) * 1000
    answers = []
    for call, (top, body) in enumerate(zip(table.column("top_logprobs").to_pylist(),
                                           table.column("raw_body").to_pylist())):  # fmt: skip
        ranked = tuple((e["token"], e["logprob"]) for e in top or ())
        if ranked:
            answers.append(judge.Answer(ranked, tags.get("verify_condition", ""), base + call,
                                        _ids(body)))  # fmt: skip
    return str(tags.get("prompt_id")), answers


def _ids(body: str | None) -> tuple[int, ...] | None:
    """The top tokens' ids, where the endpoint sends them (llama.cpp's server does)."""
    if not body or '"id"' not in body:
        return None
    try:
        data = json.loads(body)
        first = data["choices"][0]["logprobs"]["content"][0]
        ids = tuple(int(e["id"]) for e in first["top_logprobs"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return ids


def exit_code(result: dict) -> int:
    """0 identical or consistent, 1 differs (2 and 3 are errors, raised before)."""
    return 1 if result.get("verdict") == judge.DIFFERS else 0


def resume_hint(root: Path) -> str:
    return f"detcheck report {shlex.quote(str(root))}"
