"""Where whole generations part from the modal one, from one more pass over their tokens and
logprobs (a batch at a time: nothing is padded to (responses x positions)): each response's
first divergence, the tokens taken where responses part, and the distinct logprobs of the modal
token at each position among the responses still on its path (the drift before any flip).
Pure numpy over the batches detcheck.analysis.generation_arrays gives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from detcheck.analysis.generation_arrays import END, Generations, batch_tokens
from detcheck.errors import DataError

MAX_SPLITS = 50  # splits listed along the modal path (the report stays readable)
_NEVER = np.iinfo(np.int64).max


@dataclass
class Paths:
    """Where each response parts from the modal completion, and what happens at each position
    among those still on its path, from one pass over the tokens and logprobs."""

    modal_tokens: list  # the modal completion's tokens (read to max_tokens)
    divergence: np.ndarray  # per response: the first position it differs at; -1: never
    parting: dict = field(default_factory=dict)  # position -> Counter of tokens (END: ended)
    first_seen: dict = field(default_factory=dict)  # (position, token) -> first response
    reference: np.ndarray | None = None  # the modal response's logprob at each position
    others: dict = field(default_factory=dict)  # position -> arrays of other logprobs seen


def modal_paths(g: Generations, modal_row: int) -> Paths:
    """Stream the completions once more against the modal one: each response's first
    divergence, the tokens taken where responses part, and the logprobs of the modal token at
    each position among the responses still on its path (the drift before any flip)."""
    modal = g.rows([modal_row], ["gen_tokens", "gen_logprobs"])[modal_row]
    cap = g.cap
    modal_tokens = list(modal.get("gen_tokens") or [])[:cap]
    mlen = len(modal_tokens)
    modal_h = g.hasher.of(modal_tokens)[:, 0] if mlen else np.zeros(0, np.uint64)
    reference = np.array([np.nan if v is None else v for v in
                          (modal.get("gen_logprobs") or [])[:mlen]], np.float64)  # fmt: skip
    paths = Paths(modal_tokens, np.full(g.n, -1, np.int64), reference=reference)
    at = 0
    for batch in g.batches(["gen_tokens", "gen_logprobs"]):
        n = batch.num_rows
        t = batch_tokens(batch.column("gen_tokens"), g.hasher)
        values = pc.list_flatten(batch.column("gen_logprobs")).to_numpy(zero_copy_only=False)
        values = values.astype(np.float64, copy=False)
        if values.size != t.codes.size:
            raise DataError(
                "the stored logprobs do not match the stored tokens, position by position"
            )
        lengths = np.minimum(t.lengths, cap) if cap is not None else t.lengths
        if t.uniform is not None:
            div = _divergence_grid(t, lengths, _codes_of(t, modal_h, g.hasher))
        else:
            div = _divergence_flat(t, lengths, modal_h)
        paths.divergence[at : at + n] = div
        _parting(paths, t, div, lengths, at)
        _drift(paths, t, values, div, lengths)
        at += n
    return paths


def _codes_of(t, modal_h: np.ndarray, hasher) -> np.ndarray:
    """The modal tokens as codes of this batch's dictionary (-1: a token it does not have)."""
    index = {int(h): c for c, h in enumerate(t.table[:, 0].tolist())}
    return np.array([index.get(int(h), -1) for h in modal_h.tolist()], np.int64)


def _divergence_grid(t, lengths: np.ndarray, modal_codes: np.ndarray) -> np.ndarray:
    """Each row's first position differing from the modal tokens, for rows of one length
    (compared as this batch's codes: no hash is looked up per token)."""
    mlen, width = len(modal_codes), int(lengths[0]) if len(lengths) else 0
    common = min(mlen, width)
    codes = t.grid(t.codes)[:, :common]
    differs = codes != modal_codes[None, :common]
    div = np.where(differs.any(axis=1), differs.argmax(axis=1), _NEVER)
    if width != mlen:  # one ends first: they part where it does
        div = np.minimum(div, common)
    return np.where(div == _NEVER, -1, div)


def _divergence_flat(t, lengths: np.ndarray, modal_h: np.ndarray) -> np.ndarray:
    mlen = len(modal_h)
    rows, pos, h = t.rows, t.positions, t.hashes(0)
    inside = pos < lengths[rows]  # past max_tokens: not read
    if mlen:
        differs = inside & ((pos >= mlen) | (h != modal_h[np.minimum(pos, mlen - 1)]))
    else:
        differs = inside
    div = np.full(len(lengths), _NEVER, np.int64)
    hit = np.flatnonzero(differs)
    if hit.size:
        first_rows, first = np.unique(rows[hit], return_index=True)
        div[first_rows] = pos[hit[first]]
    shorter = lengths < mlen
    div[shorter] = np.minimum(div[shorter], lengths[shorter])
    return np.where(div == _NEVER, -1, div)


def _parting(paths: Paths, t, div: np.ndarray, lengths: np.ndarray, at: int) -> None:
    """The token each parting response takes where it parts (END if it ended there)."""
    parted = np.flatnonzero(div >= 0)
    if not parted.size:
        return
    starts = t.starts if t.uniform is None else np.arange(len(t.lengths)) * t.uniform
    for r in parted.tolist():
        p = int(div[r])
        token = END if p >= lengths[r] else t.dictionary[int(t.codes[starts[r] + p])]
        paths.parting.setdefault(p, Counter())[token] += 1
        paths.first_seen.setdefault((p, token), at + r)


def _drift(paths: Paths, t, values: np.ndarray, div: np.ndarray, lengths: np.ndarray) -> None:
    """The distinct logprobs at each position among the responses still on the modal path
    there (bar the modal response's own value, known already)."""
    mlen = len(paths.modal_tokens)
    if not mlen or not values.size:
        return
    if t.uniform is not None:
        common = min(mlen, t.uniform)
        grid = t.grid(values)[:, :common]
        pos = np.arange(common)[None, :]
        on_path = (div[:, None] == -1) | (pos < div[:, None])
        left = on_path & ~np.isnan(grid) & (grid != paths.reference[None, :common])
        columns = np.arange(common)
        # a position's values are few: take each column's first one left, drop all equal to
        # it, again (one pass over the batch per distinct value, not a sort of it)
        for _ in range(8):
            if not left.any():
                return
            first = left.argmax(axis=0)
            has = left[first, columns]
            picked = grid[first, columns]
            for w in np.flatnonzero(has).tolist():
                paths.others.setdefault(w, []).append(picked[w : w + 1])
            left &= ~(has[None, :] & (grid == picked[None, :]))
        if not left.any():  # the eighth pass took the last of them
            return
        r, where = np.nonzero(left)  # many distinct values: the rest at once
        found = grid[r, where]
    else:
        rows, pos = t.rows, t.positions
        on_path = (pos < lengths[rows]) & (pos < mlen)
        on_path &= (div[rows] == -1) | (pos < div[rows])
        ref = paths.reference[np.minimum(pos, mlen - 1)]
        other = on_path & ~np.isnan(values) & (values != ref)
        if not other.any():
            return
        where, found = pos[other], values[other]
    order = np.lexsort((found, where))
    where, found = where[order], found[order]
    cuts = np.flatnonzero(np.diff(where)) + 1
    for w, v in zip(np.split(where, cuts), np.split(found, cuts)):
        paths.others.setdefault(int(w[0]), []).append(np.unique(v))


def _ended(token) -> bool:
    return isinstance(token, int)  # END; a token is text (or None)


def positions_profile(g: Generations, paths: Paths) -> list[dict]:
    """One entry per position of the modal completion: among responses that agree with it up
    to there, how many distinct tokens come next, and among those that take the modal token,
    how many bit-distinct logprobs it has and how far they spread (drift that has not, or not
    yet, flipped a token)."""
    out = []
    div = paths.divergence
    never = int((div == -1).sum())
    counts = np.bincount(div[div >= 0], minlength=len(paths.modal_tokens) + 1)
    from_here = never + np.cumsum(counts[::-1])[::-1]  # responses parting at or after p, or never
    for p, token in enumerate(paths.modal_tokens):
        on_after = never + (int(from_here[p + 1]) - never if p + 1 < len(from_here) else 0)
        parting = paths.parting.get(p, {})
        ref = paths.reference[p] if p < len(paths.reference) else np.nan
        found = [paths.others[p]] if p in paths.others else []
        distinct = np.unique(np.concatenate([*(x for f in found for x in f),
                                             [] if np.isnan(ref) else [ref]]))  # fmt: skip
        out.append(
            {
                "position": p,
                "token": token,
                "responses": int(from_here[p]),
                "distinct_tokens": int(on_after > 0) + len(parting),
                "distinct_logprobs": int(distinct.size),
                "logprob_min": float(distinct[0]) if distinct.size else None,
                "logprob_max": float(distinct[-1]) if distinct.size else None,
                "logprob_spread": float(distinct[-1] - distinct[0]) if distinct.size else None,
            }
        )
    return out


def splits_on_modal_path(g: Generations, paths: Paths) -> list[dict]:
    """Where paths part, read along the modal completion: at each position where responses
    that agreed so far take different tokens, the tokens with their counts, and the top-1/top-2
    logprob gap of the modal response there (a near-tie says why they parted)."""
    out = []
    div = paths.divergence
    mlen = len(paths.modal_tokens)
    never = int((div == -1).sum())
    counts = np.bincount(div[div >= 0], minlength=g.width + 2)
    after = never + np.cumsum(counts[::-1])[::-1] - counts  # responses still on it past p
    for p in range(g.width):
        parting = paths.parting.get(p, Counter())
        staying = int(after[p]) if p < len(after) else never
        if staying + sum(parting.values()) == 0:
            break
        if (staying > 0) + len(parting) < 2:
            if p >= mlen:
                break
            continue
        modal = paths.modal_tokens[p] if p < mlen else END
        entries = [(modal, staying, -1, True)] if staying else []
        entries += [(tok, c, paths.first_seen[(p, tok)], False) for tok, c in parting.items()]
        entries.sort(key=lambda e: (-e[1], not _ended(e[0]), e[2]))
        gap = None
        if g.modal_top is not None and p < len(g.modal_top):
            top = [v for v in g.modal_top[p] if v is not None]
            if len(top) >= 2:
                gap = float(top[0] - top[1])
        out.append(
            {
                "position": p,
                "responses": staying + sum(parting.values()),
                "tokens": [
                    {
                        "token": None if _ended(tok) else tok,
                        "ended": _ended(tok),
                        "count": int(c),
                        "modal": is_modal,
                    }
                    for tok, c, _, is_modal in entries
                ],
                "top_gap_logprob": gap,
            }
        )
        if len(out) >= MAX_SPLITS:
            break
    return out
