#!/usr/bin/env bash
# make bench: the gateway against the loopback ceiling and a socat relay, measured in one run with
# the shared tools (wsload, echopeer). Prints a table of ratios and appends it to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED=${SHARED:-../shared/bench}
OUT=.build/bench
DURATION=${DURATION:-4}
RUNS=${RUNS:-3}
GATEWAY=${GATEWAY:-.build/release/websocksy}
mkdir -p "$OUT"

[ -f "$SHARED/wsload.c" ] || { echo "bench: $SHARED/wsload.c not found (set SHARED=path/to/shared/bench)"; exit 1; }
cc -O2 -o "$OUT/wsload" "$SHARED/wsload.c"
cc -O2 -o "$OUT/echopeer" "$SHARED/echopeer.c"
cc -O2 -o "$OUT/wssbench" bench/wssbench.c -lgnutls -lpthread
[ -f "$OUT/key.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/key.pem" \
    -out "$OUT/cert.pem" -days 3650 -subj /CN=localhost 2>/dev/null
if ! command -v socat >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat
fi

PEER_PORT=19300; SOCAT_PORT=19301; GW_PORT=19302; TLS_PORT=19303
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Load generator and peer on core 0, the relay under test on core 1 (where there are two cores).
if [ "$(nproc)" -ge 2 ]; then LOAD="taskset -c 0"; RELAY="taskset -c 1"; else LOAD=""; RELAY=""; fi

$LOAD "$OUT/echopeer" -t tcp -a 127.0.0.1:$PEER_PORT -q & pids+=($!)
$RELAY socat TCP-LISTEN:$SOCAT_PORT,fork,reuseaddr,backlog=1024 TCP:127.0.0.1:$PEER_PORT 2>"$OUT/socat.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $GW_PORT -k 0 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary 2>"$OUT/gateway.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $TLS_PORT -k 0 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary \
    --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" 2>"$OUT/gateway-tls.log" & pids+=($!)
sleep 0.5

# field NAME from a RESULT line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# median of the RUNS values of FIELD for one wsload command
measure() {
    local fieldname=$1; shift
    local values=()
    for _ in $(seq "$RUNS"); do
        values+=("$($LOAD "$OUT/wsload" -q -d "$DURATION" "$@" | tee -a "$OUT/wsload.log" | field "$fieldname")")
    done
    printf '%s\n' "${values[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}

declare -A R
tests=("echo1:msgs_per_s:-M echo -c 1 -s 64" "echo1p99:p99_us:-M echo -c 1 -s 64"
       "echo100:msgs_per_s:-M echo -c 100 -s 1024" "echo100p99:p99_us:-M echo -c 100 -s 1024"
       "stream:MBps:-M stream -c 1 -s 65536")
for t in "${tests[@]}"; do
    IFS=: read -r name fieldname args <<<"$t"
    R[$name,ceiling]=$(measure "$fieldname" -R -u 127.0.0.1:$PEER_PORT $args)
    R[$name,socat]=$(measure "$fieldname" -R -u 127.0.0.1:$SOCAT_PORT $args)
    R[$name,gateway]=$(measure "$fieldname" -u ws://127.0.0.1:$GW_PORT/ $args)
done
R[handshake,gateway]=$(measure msgs_per_s -M handshake -c 10 -u ws://127.0.0.1:$GW_PORT/)

# wss: the same client (wssbench) over plain TCP and over TLS to one TLS-enabled gateway.
wss() {
    local fieldname=$1; shift
    local values=()
    for _ in $(seq "$RUNS"); do values+=("$($LOAD "$OUT/wssbench" -d "$DURATION" -a 127.0.0.1:$TLS_PORT "$@" | field "$fieldname")"); done
    printf '%s\n' "${values[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
R[wss_stream,plain]=$(wss MBps -M stream -s 65536 -p)
R[wss_stream,tls]=$(wss MBps -M stream -s 65536)
R[wss_handshake,plain]=$(wss upgrades_per_s -M handshake -c 10 -p)
R[wss_handshake,tls]=$(wss upgrades_per_s -M handshake -c 10)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

table=$(cat <<EOT
| test (wsload, median of $RUNS × ${DURATION}s) | no-relay ceiling | socat (raw TCP) | websocksy | websocksy / socat | websocksy / ceiling |
|---|---|---|---|---|---|
| echo, 1 conn, 64 B: msgs/s | ${R[echo1,ceiling]} | ${R[echo1,socat]} | ${R[echo1,gateway]} | $(ratio "${R[echo1,gateway]}" "${R[echo1,socat]}") | $(ratio "${R[echo1,gateway]}" "${R[echo1,ceiling]}") |
| echo, 1 conn, 64 B: p99 µs | ${R[echo1p99,ceiling]} | ${R[echo1p99,socat]} | ${R[echo1p99,gateway]} | $(ratio "${R[echo1p99,gateway]}" "${R[echo1p99,socat]}") | $(ratio "${R[echo1p99,gateway]}" "${R[echo1p99,ceiling]}") |
| echo, 100 conns, 1 KiB: msgs/s | ${R[echo100,ceiling]} | ${R[echo100,socat]} | ${R[echo100,gateway]} | $(ratio "${R[echo100,gateway]}" "${R[echo100,socat]}") | $(ratio "${R[echo100,gateway]}" "${R[echo100,ceiling]}") |
| echo, 100 conns, 1 KiB: p99 µs | ${R[echo100p99,ceiling]} | ${R[echo100p99,socat]} | ${R[echo100p99,gateway]} | $(ratio "${R[echo100p99,gateway]}" "${R[echo100p99,socat]}") | $(ratio "${R[echo100p99,gateway]}" "${R[echo100p99,ceiling]}") |
| stream, 1 conn, 64 KiB: MB/s | ${R[stream,ceiling]} | ${R[stream,socat]} | ${R[stream,gateway]} | $(ratio "${R[stream,gateway]}" "${R[stream,socat]}") | $(ratio "${R[stream,gateway]}" "${R[stream,ceiling]}") |
| handshake, 10 conns: upgrades/s (each connects to the peer) | — | — | ${R[handshake,gateway]} | | |

| wssbench, median of $RUNS × ${DURATION}s | ws:// | wss:// (TLS 1.3, P-256) | wss / ws |
|---|---|---|---|
| stream, 1 conn, 64 KiB: MB/s | ${R[wss_stream,plain]} | ${R[wss_stream,tls]} | $(ratio "${R[wss_stream,tls]}" "${R[wss_stream,plain]}") |
| handshake, 10 conns: upgrades/s | ${R[wss_handshake,plain]} | ${R[wss_handshake,tls]} | $(ratio "${R[wss_handshake,tls]}" "${R[wss_handshake,plain]}") |
EOT
)
echo "$table"

{
    echo
    echo "## $(date -u +%Y-%m-%d) — $(git rev-parse --short HEAD), $(nproc) cores"
    echo
    echo "Command: \`make bench\` (DURATION=$DURATION RUNS=$RUNS). wsload and echopeer on core 0, the relay on core 1."
    echo "Peer: \`echopeer -t tcp -M echo\`. socat: \`socat TCP-LISTEN:P,fork,reuseaddr TCP:127.0.0.1:PEER\`, driven with \`wsload -R\`."
    echo "websocksy: \`websocksy -k 0 -c host=tcp://127.0.0.1:PEER -c framing=binary\`; for wss a second instance with"
    echo "\`--tls-cert\`, driven by \`bench/wssbench\` (GnuTLS client; it reads the 101 byte by byte, so its ws:// upgrade rate is"
    echo "below wsload's). The load generator does its half of the TLS work on the other core."
    echo
    echo "$table"
} >> BENCHMARKS.md
