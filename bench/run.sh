#!/usr/bin/env bash
# `make bench`: throughput and latency of the real service on PostgreSQL + Redis, and (when ../shared/bench
# is present) of the FastAPI yardstick on the same machine in the same run, printed as one table.
#
# The server is pinned to CPU 0 and the load tools to CPU 1 (when taskset works), as in ../shared/bench.
# Env: DUR (10 s per phase), PORT (8100), SERVERS ("daphne uvicorn granian"), E2E_RATE (500), E2E_CLIENTS (20),
#      BROWSER_RATE (1000 tx/s into the live page in chromium, first server only; 0 skips it),
#      BATCH (100), BATCH_CONC (4), PEER (1: also run the yardstick), OUT (bench/results/<time>),
#      TRAIN_ARGS (options for train_model: "--trees 300 --depth 6" serves a model of the yardstick's size),
#      SCALE_OUT (1: also two uvicorn processes on PORT and PORT+1 behind round-robin load; 0 skips it),
#      VACUUM_PHASES (1: VACUUM (ANALYZE) the database before each phase, see settle_db; 0 skips it),
#      MONTH (1: also batches scored over the month of history import_transactions stored; 0 skips it),
#      DEPTH (1: also batches scored with every merchant's last 900 hours stored, on top of the month; 0 skips it),
#      WEBHOOK (1: a webhook endpoint wants transaction.flagged, so every flagged row also writes its outbox event;
#      nothing delivers them during the run: what ingest pays for webhooks),
#      WHATIF (1: also c64 and batches on uvicorn without rules and with 20 active rules and a challenger model
#      (bench/whatif.py), alternately, three passes and two: what issue 26's rules and shadow model cost; 0 skips it),
#      BACKTEST (1: last, a rule's backtest over a million stored transactions in a database of its own; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
SHARED="${SHARED:-$ROOT/../shared/bench}"
DUR="${DUR:-10}"
PORT="${PORT:-8100}"
SERVERS="${SERVERS:-daphne uvicorn granian}"
E2E_RATE="${E2E_RATE:-500}"
E2E_CLIENTS="${E2E_CLIENTS:-20}"
BROWSER_RATE="${BROWSER_RATE:-1000}"
BATCH="${BATCH:-100}"
BATCH_CONC="${BATCH_CONC:-4}"
PEER="${PEER:-1}"
OUT="${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
DB=fraudsite_bench
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" REDIS_URL="redis://127.0.0.1:6379/0"
export CHANNEL_PREFIX="bench" OMP_NUM_THREADS=1 PYTHONHASHSEED=0
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

command -v wrk >/dev/null || { echo "== installing wrk (Debian package)"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
bin/ensure-services "$DB"
PIN_SERVER=() PIN_LOAD=()
if command -v taskset >/dev/null && taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null; then
  PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
else
  echo "taskset unavailable: running unpinned" >&2
fi

echo "== fresh database $DB, starter model, API key and a dashboard login"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$PY" manage.py migrate --noinput -v 0
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of options, e.g. "--trees 300 --depth 6"
"$PY" manage.py train_model --activate ${TRAIN_ARGS:-} > "$OUT/train.txt"
grep -iE "auc|precision" "$OUT/train.txt" | head -4 | sed 's/^/   /' || true
KEY=$("$PY" manage.py create_api_key bench 2>/dev/null | tail -1)
"$PY" manage.py shell -c "
from scoring.roles import ensure_user
ensure_user('bench', password='bench-pass-1')"  # an analyst: the dashboards need a role
if [[ ${WEBHOOK:-0} == 1 ]]; then
  "$PY" manage.py webhook add http://127.0.0.1:9/bench --events transaction.flagged > /dev/null
  echo "== a webhook endpoint wants transaction.flagged: flagged rows write outbox events"
fi

BENCHLIB=()
[[ -f $SHARED/benchlib.py ]] && BENCHLIB=("$PY" "$SHARED/benchlib.py")
snap() { [[ ${#BENCHLIB[@]} -gt 0 ]] && "${BENCHLIB[@]}" snap --pid "$1" --pg-dsn "$DATABASE_URL" --pg-db "$DB" > "$2" || true; }

# This machine's PostgreSQL runs with autovacuum off (/etc/postgresql/*/main/conf.d/90-ci.conf), a CI
# setting no stock server has. Without it no page is ever marked all-visible and no statistics are taken,
# so the card-history read (an index-only scan) visits a heap page for every row it returns: PostgreSQL's
# CPU a transaction then grows with the table, phase after phase, while with a VACUUM (ANALYZE) before each
# phase it stays flat (the figures are in docs/performance.md). We run one before each phase, as autovacuum
# would; rows written during a phase stay unvacuumed. VACUUM_PHASES=0 measures without.
settle_db() {
  [[ ${VACUUM_PHASES:-1} == 1 ]] && psql -h 127.0.0.1 -U postgres -d "$DB" -qc "VACUUM (ANALYZE)"
  return 0
}

# The share of a phase's transactions the model flagged: each flagged one also writes a case and its audit event
# (with their foreign-key checks), so a phase costs PostgreSQL more the more of it is flagged (docs/performance.md,
# "What the bench's traffic costs depends on how much is flagged"). How much of the load the starter model flags
# depends on the model and on the hour (the load tools' cards pay every second or so), so runs with different
# shares did different work.
last_id() { psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "SELECT coalesce(max(id), 0) FROM scoring_transaction"; }
flagged_since() {  # flagged_since ID: {"stored": N, "flagged": M} of the transactions stored after ID
  psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "SELECT json_build_object('stored', count(*),
    'flagged', count(*) FILTER (WHERE decision <> 'approve')) FROM scoring_transaction WHERE id > $1"
}

phase() {  # phase SERVER_PID NAME CMD...
  local pid="$1" name="$2" first; shift 2
  settle_db
  [[ ${#BENCHLIB[@]} -gt 0 ]] && "${BENCHLIB[@]}" idle "$pid" 60
  echo "== $name"
  first=$(last_id)
  snap "$pid" "$OUT/$name.before.json"
  "$@" > "$OUT/$name.txt" 2>&1 || { echo "   $name failed:"; tail -5 "$OUT/$name.txt"; }
  snap "$pid" "$OUT/$name.after.json"
  flagged_since "$first" > "$OUT/$name.flagged.json"
  grep -E "Requests/sec|Latency|BENCHJSON|missed|e2e" "$OUT/$name.txt" | grep -v '^BENCHJSON' | sed 's/^/   /' || true
  if [[ ${#BENCHLIB[@]} -gt 0 ]]; then
    "${BENCHLIB[@]}" phase "$name" "$OUT/$name.before.json" "$OUT/$name.after.json" "$OUT/$name.txt" >> "$OUT/results.jsonl"
  fi
}

start_server() {  # start_server NAME -> sets SERVER_PID
  case "$1" in
    daphne) exec "${PIN_SERVER[@]}" "$ROOT/.venv/bin/daphne" -v 0 -b 127.0.0.1 -p "$PORT" fraudsite.asgi:application ;;
    uvicorn) exec "${PIN_SERVER[@]}" "$ROOT/.venv/bin/uvicorn" fraudsite.asgi:application --host 127.0.0.1 --port "$PORT" \
               --no-access-log --log-level warning ;;
    # asginl: Channels' router has no lifespan support (granian warns and goes on without it otherwise).
    # One worker process (a child of the pinned supervisor; benchlib counts children's CPU too).
    granian) exec "${PIN_SERVER[@]}" "$ROOT/.venv/bin/granian" --interface asginl --host 127.0.0.1 --port "$PORT" \
               --workers 1 --log-level warning fraudsite.asgi:application ;;
  esac > "$OUT/server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 120); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died:"; cat "$OUT/server-$1.log"; exit 1; }
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "server did not come up"; exit 1
}

BASE="http://127.0.0.1:$PORT"
RUN="r$(date +%s)"
# Each server starts on an empty store (the model, key and login stay): each server's phases add tens of
# thousands of rows and their cases, and the batch phase waits on PostgreSQL, so a later server would
# otherwise be measured on a bigger database than an earlier one.
empty_store() {
  psql -h 127.0.0.1 -U postgres -d "$DB" -qc \
    "TRUNCATE scoring_caseevent, scoring_case, scoring_transaction, scoring_merchanthour RESTART IDENTITY CASCADE"
}
for server in $SERVERS; do
  empty_store
  start_server "$server"
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  echo "== $server on $BASE (pid $SERVER_PID, pinned: ${PIN_SERVER[*]:-no}); results in $OUT"
  "${PIN_LOAD[@]}" wrk -t1 -c16 -d3s -s "$SHARED/post.lua" "$BASE/api/v1/transactions" -- "$KEY" "${RUN}${server}w" \
    > "$OUT/warmup-$server.txt" 2>&1 || true
  phase "$SERVER_PID" "${server}_c16" "${PIN_LOAD[@]}" wrk -t1 -c16 -d"${DUR}s" --latency --timeout 30s \
    -s "$SHARED/post.lua" "$BASE/api/v1/transactions" -- "$KEY" "${RUN}${server}c16"
  phase "$SERVER_PID" "${server}_c64" "${PIN_LOAD[@]}" wrk -t1 -c64 -d"${DUR}s" --latency --timeout 30s \
    -s "$SHARED/post.lua" "$BASE/api/v1/transactions" -- "$KEY" "${RUN}${server}c64"
  phase "$SERVER_PID" "${server}_batch$BATCH" "${PIN_LOAD[@]}" wrk -t1 -c"$BATCH_CONC" -d"${DUR}s" --latency \
    --timeout 60s -s "$SHARED/batch.lua" "$BASE/api/v1/transactions/batch" -- "$KEY" "$BATCH" "${RUN}${server}b"
  phase "$SERVER_PID" "${server}_e2e_$E2E_RATE" "${PIN_LOAD[@]}" "$PY" "$SHARED/e2e_ws.py" \
    --ws-url "ws://127.0.0.1:$PORT/ws/dashboard/" --origin "$BASE" --login-url "$BASE/accounts/login/" \
    --login-user bench --login-pass bench-pass-1 --post-url "$BASE/api/v1/transactions" --key "$KEY" \
    --clients "$E2E_CLIENTS" --rate "$E2E_RATE" --duration "$DUR" --run-id "${RUN}${server}e"
  if [[ $server == "${SERVERS%% *}" && -x /usr/bin/chromium && $BROWSER_RATE != 0 ]]; then
    echo "== ${server}_browser_$BROWSER_RATE: the live page in chromium while ingest runs at $BROWSER_RATE tx/s"
    "${PIN_LOAD[@]}" "$PY" bench/browser_load.py --base "$BASE" --key "$KEY" --user bench --password bench-pass-1 \
      --rate "$BROWSER_RATE" --duration "$DUR" --run-id "${RUN}${server}p" --screenshot "$OUT/browser-load.png" \
      > "$OUT/browser.txt" 2>&1 || { echo "   browser phase failed:"; tail -5 "$OUT/browser.txt"; }
    grep -v '^BROWSERJSON' "$OUT/browser.txt" | tail -1 | sed 's/^/   /' || true
  fi
  kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
  while curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done  # port free again
  trap - EXIT
done

whatif_phases() {  # whatif_phases NAME: c64 single POSTs and batches on the running server, named NAME_...
  # Each from an empty store: a card's history grows through a phase, and with it the cost of its features, so
  # phases that followed each other on a growing store would measure their order as much as the rules.
  empty_store
  phase "$SERVER_PID" "$1_c64" "${PIN_LOAD[@]}" wrk -t1 -c64 -d"${DUR}s" --latency --timeout 30s \
    -s "$SHARED/post.lua" "$BASE/api/v1/transactions" -- "$KEY" "${RUN}$1c64"
  empty_store
  phase "$SERVER_PID" "$1_batch$BATCH" "${PIN_LOAD[@]}" wrk -t1 -c"$BATCH_CONC" -d"${DUR}s" --latency \
    --timeout 60s -s "$SHARED/batch.lua" "$BASE/api/v1/transactions/batch" -- "$KEY" "$BATCH" "${RUN}$1b"
}

whatif_warmup() {  # whatif_warmup NAME: 3 s of load first, so that each process has loaded what changed (the
  # challenger model, the compiled rules) before a phase measures the steady state
  "${PIN_LOAD[@]}" wrk -t1 -c16 -d3s -s "$SHARED/post.lua" "$BASE/api/v1/transactions" -- "$KEY" "${RUN}$1w" \
    > "$OUT/warmup-whatif-$1.txt" 2>&1 || true
}

if [[ ${WHATIF:-1} == 1 ]]; then
  # Issue 26's cost: one uvicorn, the same phases without rules, with 20 active rules and a challenger model,
  # alternately: plain, with them, plain, with them, plain (the machine drifts: the plain passes bracket the others).
  # Each process picks a change up within RULES_REFRESH_SECONDS / MODEL_REFRESH_SECONDS (5 s by default).
  empty_store
  start_server uvicorn
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  echo "== issue 26's cost on uvicorn: plain and with 20 active rules and a challenger, alternately"
  for pass in 1 2 3; do
    if [[ $pass -gt 1 ]]; then
      "$PY" bench/whatif.py on | sed 's/^/   /'
      sleep 6
      whatif_warmup "rules$pass"
      whatif_phases "rules$pass"
      if [[ $pass == 2 ]]; then
        phase "$SERVER_PID" "rules_e2e_$E2E_RATE" "${PIN_LOAD[@]}" "$PY" "$SHARED/e2e_ws.py" \
          --ws-url "ws://127.0.0.1:$PORT/ws/dashboard/" --origin "$BASE" --login-url "$BASE/accounts/login/" \
          --login-user bench --login-pass bench-pass-1 --post-url "$BASE/api/v1/transactions" --key "$KEY" \
          --clients "$E2E_CLIENTS" --rate "$E2E_RATE" --duration "$DUR" --run-id "${RUN}wie"
      fi
      "$PY" bench/whatif.py off | sed 's/^/   /'
      sleep 6
    fi
    whatif_warmup "plain$pass"
    whatif_phases "plain$pass"
  done
  kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
  while curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
  trap - EXIT
fi

if [[ ${SCALE_OUT:-1} == 1 ]]; then
  # Issue 5's scale-out figure: two processes of the Procfile's server behind round-robin load (wrk's two
  # threads, one per process). This machine has two cores: the servers are not pinned, the load stays on
  # CPU 1 as in the other phases, so this shows the mechanism, not how far more cores would take it.
  PORT2=$((PORT + 1))
  echo "== two uvicorn processes on $PORT and $PORT2, round-robin load (servers unpinned)"
  empty_store
  setsid bash -c "for p in $PORT $PORT2; do '$ROOT/.venv/bin/uvicorn' fraudsite.asgi:application --host 127.0.0.1 \
    --port \$p --no-access-log --log-level warning & done; wait" > "$OUT/server-x2.log" 2>&1 &
  PAIR_PID=$!
  trap 'kill -- -$PAIR_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 120); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$PORT2/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  RR=(env POST_LUA="$SHARED/post.lua" RR_TARGETS="127.0.0.1:$PORT,127.0.0.1:$PORT2")
  "${PIN_LOAD[@]}" "${RR[@]}" wrk -t2 -c32 -d5s -s bench/roundrobin.lua "$BASE/api/v1/transactions" -- "$KEY" "${RUN}x2w" \
    > "$OUT/warmup-x2.txt" 2>&1 || true
  phase "$PAIR_PID" "uvicorn_x2_c64" "${PIN_LOAD[@]}" "${RR[@]}" wrk -t2 -c64 -d"${DUR}s" --latency --timeout 30s \
    -s bench/roundrobin.lua "$BASE/api/v1/transactions" -- "$KEY" "${RUN}x2"
  kill -- -"$PAIR_PID" 2>/dev/null || true; wait "$PAIR_PID" 2>/dev/null || true
  while curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
  trap - EXIT
fi

echo "== import_transactions: ~200,000 simulated rows into PostgreSQL"
"$PY" manage.py simulate --write-csv "$OUT/history.csv" --days 30 --cards 4500 > /dev/null
# The simulator's cards and merchants (c004321, m00123) renamed as the load tools name theirs (card-04321,
# merch-0123), so that the month phase below scores the load's cards and merchants against this history.
sed -i -E 's/^([^,]*),c0([0-9]{5}),m0([0-9]{4}),/\1,card-\2,merch-\3,/' "$OUT/history.csv"
sed -n 2p "$OUT/history.csv" | grep -q '^[^,]*,card-[0-9]*,merch-' \
  || echo "   the simulator's ids were not renamed: the month phase would score cards without history" >&2
/usr/bin/time -f "%e" -o "$OUT/import.time" "$PY" manage.py import_transactions "$OUT/history.csv" --source bench \
  > "$OUT/import.txt"
tail -2 "$OUT/import.txt" | sed 's/^/   /'
rm -f "$OUT/history.csv"

batches_on_uvicorn() {  # batches_on_uvicorn NAME TAG: a fresh uvicorn, warmed up, then the phase uvicorn_NAME_batch$BATCH
  start_server uvicorn
  trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
  "${PIN_LOAD[@]}" wrk -t1 -c"$BATCH_CONC" -d3s -s "$SHARED/batch.lua" "$BASE/api/v1/transactions/batch" \
    -- "$KEY" "$BATCH" "${RUN}${2}w" > "$OUT/warmup-$1.txt" 2>&1 || true
  phase "$SERVER_PID" "uvicorn_$1_batch$BATCH" "${PIN_LOAD[@]}" wrk -t1 -c"$BATCH_CONC" -d"${DUR}s" --latency \
    --timeout 60s -s "$SHARED/batch.lua" "$BASE/api/v1/transactions/batch" -- "$KEY" "$BATCH" "${RUN}$2"
  kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
  trap - EXIT
}

if [[ ${MONTH:-1} == 1 ]]; then
  # The phases above score against a store that starts empty: a merchant's hours and a card's rows are those
  # of the last minutes. In production each reaches 30 days back (up to 888 merchant hours, with the label
  # delay), which costs both reads more. This phase scores the same batches over the month just imported
  # (90 % of the load's cards and 45 % of its merchants have history there).
  batches_on_uvicorn month m
fi

if [[ ${DEPTH:-1} == 1 ]]; then
  # A store that has run for a month at production rates holds a row for every hour of every merchant (888
  # of them with the label delay), written hour by hour, so one merchant's hours lie on as many heap pages;
  # the month imported above holds far fewer, written merchant by merchant. This phase adds the rest:
  # synthetic counts (no transactions behind them) for each of the load's 2,000 merchants in each of its
  # last 900 hours, hour by hour, then scores the same batches over them and the month's card histories.
  echo "== every one of the load's 2,000 merchants with counts in each of its last 900 hours (synthetic)"
  NOW_HOUR=$(( $(date +%s) / 3600 ))
  psql -h 127.0.0.1 -U postgres -d "$DB" -qc "INSERT INTO scoring_merchanthour (merchant_id, hour, count, fraud_count)
    SELECT 'merch-' || lpad(m::text, 4, '0'), h, 1 + (h * 7 + m) % 20, ((h + m) % 20 = 0)::int
    FROM generate_series($((NOW_HOUR - 900)), $((NOW_HOUR - 1))) h, generate_series(0, 1999) m ORDER BY h, m
    ON CONFLICT (merchant_id, hour) DO NOTHING"
  batches_on_uvicorn depth d
fi

if [[ $PEER == 1 && -f $SHARED/run_peer.sh ]]; then
  echo "== the FastAPI yardstick, same machine, same load (../shared/bench)"
  bash "$SHARED/setup.sh" > "$OUT/peer-setup.txt" 2>&1 || { echo "   yardstick setup failed"; tail -5 "$OUT/peer-setup.txt"; }
  OUT="$OUT/peer" DUR="$DUR" PHASES="c16 c64 batch" BATCH="$BATCH" BATCH_CONC="$BATCH_CONC" WAIT_QUIET=10 \
    bash "$SHARED/run_peer.sh" > "$OUT/peer.txt" 2>&1 || { echo "   yardstick run failed"; tail -5 "$OUT/peer.txt"; }
fi

echo
"$PY" bench/report.py "$OUT" | tee "$OUT/summary.txt"

if [[ ${BACKTEST:-1} == 1 ]]; then
  # Last, in a database of its own: a million stored transactions over 30 days (SQL, under a minute), then the
  # backtest of a three-clause rule over them, beside five other active rules (bench/backtest_timing.py).
  echo
  echo "== a rule's backtest over 1,000,000 stored transactions (30 days, 5 other active rules)"
  BT_DB=fraudsite_backtest_bench
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $BT_DB WITH (FORCE)" -c "CREATE DATABASE $BT_DB"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BT_DB" "$PY" manage.py migrate --noinput -v 0
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$BT_DB" "$PY" bench/backtest_timing.py | tee "$OUT/backtest.txt" \
    | sed 's/^/   /'
fi
