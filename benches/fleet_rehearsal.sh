#!/usr/bin/env bash
# A fleet rehearsal on one machine: SHARDS goon processes (shards 0..SHARDS-1 of one test), each
# holding PER connections, against SHARDS `netforge serve` processes that share one port on
# purpose (--reuse-port: the kernel spreads the connections over them), all started at one
# instant with --start-at, then `netforge report merge` over their JSON results.
#
# Default: 5 x 19,000 = 95,000 concurrent connections held on this machine (the hard limit
# here is 20,000 descriptors per process). Source addresses come from 127.0.1.0/26 (62
# addresses of 127.0.0.0/8, split over the shards by --shard) so local ports are never short.
#
# Prints: time until all connections were established (from the first shard's start to the
# last shard's last dial resolved, from the JSON results), fleet connections/s, per-process
# and total RSS while all are held, /proc/net/sockstat and the kernel's slab growth then, the
# merged block, and the merge's
# exactness check (the merged count, sums and sums of squares, min and max against the shards').
# Writes the HTML report with `netforge report html` when the binary has that command.
#
# Not part of `cargo test`. Run from the repository root:
#   benches/fleet_rehearsal.sh                    # builds target/release/netforge if missing
#   SHARDS=3 PER=2000 HOLD=3s benches/fleet_rehearsal.sh
# Environment: NETFORGE (binary), SHARDS (1..64, default 5), PER (connections per shard, default
# 19000), HOLD (goon --hold, default 10s), START_IN (seconds until --start-at, default 3),
# OUT (result directory, default a new one under /tmp). Needs bash, python3 (JSON arithmetic),
# GNU date. Exit status: that of `report merge` (0 = every connection established, no error).
set -euo pipefail

NETFORGE=${NETFORGE:-target/release/netforge}
SHARDS=${SHARDS:-5}
PER=${PER:-19000}
HOLD=${HOLD:-10s}
START_IN=${START_IN:-3}
OUT=${OUT:-$(mktemp -d /tmp/netforge-fleet.XXXXXX)}
N=$((SHARDS * PER))
# Longest this script waits for the goon processes (dial + hold + report), seconds.
DEADLINE_S=${DEADLINE_S:-600}

if ! [[ $SHARDS =~ ^[0-9]+$ ]] || ((SHARDS < 1 || SHARDS > 64)); then
  echo "fleet_rehearsal: SHARDS=$SHARDS: must be 1..64" >&2; exit 64
fi
if ! [[ $PER =~ ^[0-9]+$ ]] || ((PER < 1)); then
  echo "fleet_rehearsal: PER=$PER: must be a positive number" >&2; exit 64
fi
if [[ ! -x $NETFORGE ]]; then
  echo "fleet_rehearsal: building $NETFORGE (cargo build --release)"
  nice cargo build --release --quiet
fi
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < PER + 200)); then
  echo "fleet_rehearsal: PER=$PER needs about $((PER + 200)) descriptors per process; the hard limit is $hard" >&2
  exit 64
fi
mkdir -p "$OUT"
echo "fleet_rehearsal: $SHARDS shards x $PER = $N connections; results in $OUT"
echo "fleet_rehearsal: machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg) (shared with other work: figures vary)"

slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
slab_before=$(slab_kib)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# The targets: the first binds an ephemeral port, the others join it.
"$NETFORGE" serve --listen 127.0.0.1:0 --reuse-port --interval 0 >"$OUT/serve-0.out" 2>&1 &
serve_pids=($!)
pids+=($!)
port=""
for _ in $(seq 100); do
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$OUT/serve-0.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "fleet_rehearsal: serve did not start:" >&2; cat "$OUT/serve-0.out" >&2; exit 1; }
for i in $(seq 1 $((SHARDS - 1))); do
  "$NETFORGE" serve --listen "127.0.0.1:$port" --reuse-port --interval 0 >"$OUT/serve-$i.out" 2>&1 &
  serve_pids+=($!)
  pids+=($!)
done
for i in $(seq 0 $((SHARDS - 1))); do
  for _ in $(seq 100); do grep -q 'listening on' "$OUT/serve-$i.out" 2>/dev/null && break; sleep 0.1; done
  grep -q 'listening on' "$OUT/serve-$i.out" || { echo "fleet_rehearsal: serve $i did not start:" >&2; cat "$OUT/serve-$i.out" >&2; exit 1; }
done
echo "fleet_rehearsal: $SHARDS serve processes share 127.0.0.1:$port (--reuse-port)"

# The fleet: one --start-at for all.
start_at=$(date -u -d "@$(($(date +%s) + START_IN))" +%Y-%m-%dT%H:%M:%SZ)
goon_pids=()
for i in $(seq 0 $((SHARDS - 1))); do
  "$NETFORGE" goon 127.0.0.1 "$port" -c "$N" --shard "$i/$SHARDS" -s 0 -y --dial-timeout 30000 \
    --hold "$HOLD" --linger-rst --source-ip 127.0.1.0/26 --start-at "$start_at" \
    --json "$OUT/shard-$i.json" --json-stream "$OUT/shard-$i.ndjson" >"$OUT/goon-$i.out" 2>&1 &
  goon_pids+=($!)
  pids+=($!)
done
echo "fleet_rehearsal: $SHARDS goon shards start at $start_at"

# Wait (bounded) until every shard's latest interval has all of its share established, then
# measure memory while all are held.
held() {
  python3 - "$OUT" "$SHARDS" "$PER" <<'EOF'
import json, sys, os
out, k = sys.argv[1], int(sys.argv[2])
total = 0
for i in range(k):
    p = os.path.join(out, f"shard-{i}.ndjson")
    last = None
    try:
        for line in open(p):
            line = line.strip()
            if line:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == "interval":
                    last = e["sample"]["state"]["established"]
    except OSError:
        pass
    total += last or 0
print(total)
EOF
}
t_wait=$((START_IN + 300))
got=0
for _ in $(seq $((t_wait * 4))); do
  got=$(held)
  ((got >= N)) && break
  alive=0
  for p in "${goon_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.25
done
echo "fleet_rehearsal: established now (sum of the shards' latest samples): $got of $N"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
total_rss=0
line="fleet_rehearsal: RSS KiB while held: goon"
for p in "${goon_pids[@]}"; do r=$(rss "$p"); total_rss=$((total_rss + r)); line+=" $r"; done
line+="; serve"
for p in "${serve_pids[@]}"; do r=$(rss "$p"); total_rss=$((total_rss + r)); line+=" $r"; done
echo "$line; total $total_rss KiB ($((total_rss / 1024)) MiB)"
echo "fleet_rehearsal: /proc/net/sockstat while held (mem is in pages of $(getconf PAGESIZE) B):"
sed 's/^/  /' /proc/net/sockstat
slab_held=$(slab_kib)
echo "fleet_rehearsal: kernel slab memory (/proc/meminfo Slab) grew by $(((slab_held - slab_before) / 1024)) MiB from before the start (about $(((slab_held - slab_before) * 1024 / (2 * N))) B per socket, both ends counted; other work on the machine moves it too)"

# Bounded wait for the shards to finish their hold and write their results.
deadline=$((SECONDS + DEADLINE_S))
for p in "${goon_pids[@]}"; do
  while kill -0 "$p" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "fleet_rehearsal: goon $p still running after ${DEADLINE_S}s" >&2; exit 1; }
    sleep 0.5
  done
  wait "$p" || true
done
files=()
for i in $(seq 0 $((SHARDS - 1))); do files+=("$OUT/shard-$i.json"); done

echo "fleet_rehearsal: timing from the shards' JSON results:"
python3 - "${files[@]}" <<'EOF'
import json, sys
docs = [json.load(open(p)) for p in sys.argv[1:]]
start = min(d["started_unix_s"] for d in docs)
spread = max(d["started_unix_s"] for d in docs) - start
done = [d["started_unix_s"] + d["dial_phase_s"] for d in docs if d["dial_phase_s"] is not None]
n = sum(d["counts"]["total_established"] for d in docs)
print(f"  shard starts spread over {spread*1000:.1f} ms")
if len(done) == len(docs):
    t = max(done) - start
    print(f"  all {n} established {t:.3f} s after the first shard started: {n/t:.0f} connections/s fleet-wide")
else:
    print("  some shard never resolved every dial")
for d in docs:
    s = d["shard"]
    print(f"  shard {s['index']}/{s['count']}: {d['counts']['total_established']} established, dial phase {d['dial_phase_s']:.3f} s, RSS peak {d['memory']['rss_peak_kib']} KiB")
EOF

set +e
"$NETFORGE" report merge "${files[@]}" --json "$OUT/merged.json" --min-established "$N" --max-errors 0
merge_rc=$?
set -e
echo "fleet_rehearsal: report merge exit status $merge_rc"

echo "fleet_rehearsal: merge exactness check (merged against the shards' own figures):"
python3 - "$OUT/merged.json" "${files[@]}" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
docs = [json.load(open(p)) for p in sys.argv[2:]]
ok = True
def check(name, merged, want):
    global ok
    good = merged == want
    ok &= good
    print(f"  {'ok ' if good else 'BAD'} {name}: merged {merged}, from the shards {want}")
for k in ["total", "established", "error", "not_initiated", "total_established"]:
    check(f"counts.{k}", m["counts"][k], sum(d["counts"][k] for d in docs))
c = [d["connect_time"] for d in docs if d["connect_time"]["count"] > 0]
mc = m["connect_time"]
if c:
    check("connect_time.count", mc["count"], sum(x["count"] for x in c))
    check("connect_time.sum_ns", int(mc["sum_ns"]), sum(int(x["sum_ns"]) for x in c))
    check("connect_time.sum_sq_ns2", int(mc["sum_sq_ns2"]), sum(int(x["sum_sq_ns2"]) for x in c))
    check("connect_time.min_ns", mc["min_ns"], min(x["min_ns"] for x in c))
    check("connect_time.max_ns", mc["max_ns"], max(x["max_ns"] for x in c))
    n, s, q = mc["count"], int(mc["sum_ns"]), int(mc["sum_sq_ns2"])
    dev = ((n * q - s * s) / (n * n)) ** 0.5 / 1000
    check("connect_time.dev_us (from the exact moments, to 0.01 us)", round(mc["dev_us"], 2), round(dev, 2))
samples = m["samples"]
check("sum of the fleet samples' established_new", sum(x["established_new"] for x in samples), m["counts"]["total_established"])
print(f"  max concurrent established: {m['counts']['max_concurrent_established']} (sampled sum; upper bound {m['fleet']['max_concurrent_established_upper']})")
print("  exactness check:", "PASSED" if ok else "FAILED")
EOF

if "$NETFORGE" report html --help >/dev/null 2>&1; then
  "$NETFORGE" report html "$OUT/merged.json" -o "$OUT/report.html" && echo "fleet_rehearsal: HTML report: $OUT/report.html"
else
  echo "fleet_rehearsal: this netforge has no 'report html' command; HTML report skipped"
fi
exit "$merge_rc"
