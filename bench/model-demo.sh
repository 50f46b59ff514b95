#!/usr/bin/env bash
# Real-size demo (models/README.md, "Real size"): start the server on MODEL_DIR, print the time
# to /ready and the resident memory, then `bench/serve.ts` at concurrency 1, 8 and 32 (greedy,
# exactly MAX_TOKENS text tokens per request), then the peak RSS. Run under the shared lock:
#   flock /tmp/heavy.lock bash bench/model-demo.sh models/presets/qwen3-0.6b-random
set -euo pipefail
DIR=${1:?usage: bench/model-demo.sh MODEL_DIR}
MAX_TOKENS=${MAX_TOKENS:-16}
KV_BYTES=${KV_BYTES:-1073741824}
cd "$(dirname "$0")/.."
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
LOG=$(mktemp)
t0=$(date +%s%N)
NFCOT_MODEL_DIR="$DIR" NFCOT_KV_CACHE_BYTES="$KV_BYTES" NFCOT_LOG_LEVEL=warn HOST=127.0.0.1 PORT="$PORT" \
  node --import tsx src/server.ts >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do
  kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
t1=$(date +%s%N)
echo "server ready in $(( (t1 - t0) / 1000000 )) ms; $(grep VmRSS /proc/$PID/status | tr -s ' \t' ' ')"
for C in 1 8 32; do
  N=$(( C < 4 ? 4 : C * 2 ))
  echo "== concurrency $C, $N requests, $MAX_TOKENS tokens each"
  npx tsx bench/serve.ts --url "http://127.0.0.1:$PORT" --num-prompts "$N" --max-concurrency "$C" \
    --max-tokens "$MAX_TOKENS" --ignore-eos 2>/dev/null
done
echo "peak $(grep VmHWM /proc/$PID/status | tr -s ' \t' ' '); now $(grep VmRSS /proc/$PID/status | tr -s ' \t' ' ')"
