#!/usr/bin/env bash
# A tour of detcheck with no API key and no network: every command on shipped recordings or
# examples (gpt-4o-coinflip ships inside the package), outputs under ${OUT:-tour}/. `DETCHECK` is how detcheck is run (default: uv run).
set -euo pipefail
cd "$(dirname "$0")/.."
DETCHECK=${DETCHECK:-uv run detcheck}
OUT=${OUT:-tour}
step() { printf '\n=== %s\n$ detcheck %s\n' "$1" "${*:2}" >&2; $DETCHECK "${@:2}"; }

step "GPT-4o's coin flip, rebuilt from the published figures, replayed (1,000 of its 10,000 calls)" \
  flip --n 1000 --replay gpt-4o-coinflip -o "$OUT/runs" -q
step "The first of those responses: its top-20 logprobs" \
  show gpt-4o-coinflip --row 0
step "A real engine under batching: SmolLM2-135M (F32) on llama-server at concurrency 8" \
  analyze recordings/smollm2-f32-coinflip-c8-300
step "The same model as Q4_1 against F32: compare exits 1 when they differ (it is expected)" \
  compare recordings/smollm2-q4_1-coinflip-c8-300 recordings/smollm2-f32-coinflip-c8-300 || true
step "Whole generations, replayed: how many different answers, and where they part" \
  generate --n 200 --replay recordings/story-generate-200 -o "$OUT/runs" -q
step "Responses made elsewhere: a table of repeated questions becomes a prompt set (TARr, TARa)" \
  import examples/import/run-0.csv examples/import/run-1.csv examples/import/run-2.csv \
  --text response --id question --prompt prompt --answer-regex '"Answer":"\(?([A-Za-z]+)' \
  -o "$OUT/imported" -q
step "What an audit would send (the audit itself needs an endpoint: docs/audit.md)" \
  audit --dry-run --base-url http://localhost:8080/v1 --model smol
step "The shareable page of the whole GPT-4o recording (10,000 calls)" \
  report gpt-4o-coinflip -o "$OUT/report.html"
printf '\nDone: runs under %s/, the page at %s/report.html.\n' "$OUT" "$OUT" >&2
