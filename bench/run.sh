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
cc -O2 -Wall -o "$OUT/wssbench" bench/wssbench.c -lgnutls -lpthread
cc -O2 -o "$OUT/upgradefloor" bench/upgradefloor.c -lnettle
cc -O2 -o "$OUT/deflatebench" bench/deflatebench.c -lz -lpthread
[ -f "$OUT/key.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/key.pem" \
    -out "$OUT/cert.pem" -days 3650 -subj /CN=localhost 2>/dev/null
# The same rows with an RSA-2048 certificate: handshakes cost what the certificate type costs.
[ -f "$OUT/rsa-key.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$OUT/rsa-key.pem" \
    -out "$OUT/rsa-cert.pem" -days 3650 -subj /CN=localhost 2>/dev/null
if ! command -v socat >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat
fi

PEER_PORT=19300; SOCAT_PORT=19301; GW_PORT=19302; TLS_PORT=19303; W2_PORT=19304; IDLE_PORT=19305; CG_PORT=19306; FLOOR_PORT=19307
# JSON stream rows: each gateway has its own peer port, where deflatebench listens during a run.
DZ_PORT=19308; DZ_PEER=19309; DU_PORT=19310; DU_PEER=19311; CGZ_PORT=19312; CGZ_PEER=19313
NGINX_PORT=19314; ADMIN_PORT=19315; TLS_RSA_PORT=19316; NGINX_RSA_PORT=19317; HS_PORT=19318; ES_PORT=19319; EXEC_PORT=19320
C_PORT=19321
# The C websocksy, when built (bench/c-websocksy.sh builds it from its public sources): its handshake rate
# next to ours. Its -c port= is separate, and it logs every frame to stderr.
C_WEBSOCKSY=${C_WEBSOCKSY:-$OUT/c-websocksy/websocksy}
JSON=(-c framing=newline -c framing-config=lf)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Load generator and peer on core 0, the relay under test on core 1 (where there are two cores).
if [ "$(nproc)" -ge 2 ]; then LOAD="taskset -c 0"; RELAY="taskset -c 1"; else LOAD=""; RELAY=""; fi

$LOAD "$OUT/echopeer" -t tcp -a 127.0.0.1:$PEER_PORT -q & pids+=($!)
$RELAY socat TCP-LISTEN:$SOCAT_PORT,fork,reuseaddr,backlog=1024 TCP:127.0.0.1:$PEER_PORT 2>"$OUT/socat.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $GW_PORT -k 0 --max-connections 20000 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary 2>"$OUT/gateway.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $TLS_PORT -k 0 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary \
    --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" 2>"$OUT/gateway-tls.log" & tls_pid=$!; pids+=($tls_pid)
# Upgrades that carry a token (query parameter), verified with an HMAC secret or a P-256 public key.
[ -f "$OUT/token.secret" ] || head -c 48 /dev/urandom | base64 -w0 >"$OUT/token.secret"
[ -f "$OUT/token-key.pem" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/token-key.pem" 2>/dev/null
openssl ec -in "$OUT/token-key.pem" -pubout -out "$OUT/token-pub.pem" 2>/dev/null
HS_TOKEN=$(python3 bench/mint-token.py HS256 "$OUT/token.secret")
ES_TOKEN=$(python3 bench/mint-token.py ES256 "$OUT/token-key.pem")
$RELAY "$GATEWAY" -l 127.0.0.1 -p $HS_PORT -k 0 --auth-secret "$OUT/token.secret" -c host=tcp://127.0.0.1:$PEER_PORT \
    -c framing=binary 2>"$OUT/gateway-hs256.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $ES_PORT -k 0 --auth-keys "$OUT/token-pub.pem" -c host=tcp://127.0.0.1:$PEER_PORT \
    -c framing=binary 2>"$OUT/gateway-es256.log" & pids+=($!)
# A program per connection (exec://), the peer being /bin/cat.
$RELAY "$GATEWAY" -l 127.0.0.1 -p $EXEC_PORT -k 0 -c host=exec:///bin/cat -c framing=binary 2>"$OUT/gateway-exec.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $TLS_RSA_PORT -k 0 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary \
    --tls-cert "$OUT/rsa-cert.pem" --tls-key "$OUT/rsa-key.pem" 2>"$OUT/gateway-tls-rsa.log" & tls_rsa_pid=$!; pids+=($tls_rsa_pid)
$RELAY "$OUT/upgradefloor" -p $FLOOR_PORT -P $PEER_PORT & floor_pid=$!; pids+=($floor_pid)
"$GATEWAY" -l 127.0.0.1 -p $W2_PORT -k 0 -w 2 -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary 2>"$OUT/gateway-w2.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $DZ_PORT -k 0 --compression on -c host=tcp://127.0.0.1:$DZ_PEER "${JSON[@]}" \
    2>"$OUT/gateway-deflate.log" & pids+=($!)
$RELAY "$GATEWAY" -l 127.0.0.1 -p $DU_PORT -k 0 --compression off -c host=tcp://127.0.0.1:$DU_PEER "${JSON[@]}" \
    2>"$OUT/gateway-json.log" & pids+=($!)

# nginx terminating TLS in front of the plain gateway ($GW_PORT), the usual alternative to the gateway's
# own TLS: one worker on the relay's core (with the gateway behind it), the TLS instance's certificate and
# key, TLS 1.3 only with the group and cipher that instance negotiates with wssbench (P-256, AES-256-GCM),
# session tickets on (both sides issue them; `wssbench -r` resumes from them), no session cache. Not root: prefix,
# pid, logs and temp paths are in $OUT/nginx; without root nginx ignores `user` and keeps ours.
# An upgraded connection is relayed through one proxy_buffer_size buffer each way, by default one page:
# 4 KiB reads and TLS records halve nginx's stream figure, so it gets 16 KiB, a full TLS record
# (NGINX_BUFFER= leaves nginx's default).
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
NGINX_BUFFER=${NGINX_BUFFER-16k}
NGX_DIR=$PWD/$OUT/nginx
# One TLS server of nginx in front of the plain gateway: PORT CERTIFICATE KEY (files in $OUT).
nginx_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl;
        ssl_certificate $PWD/$OUT/$2;
        ssl_certificate_key $PWD/$OUT/$3;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve prime256v1;
        ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
        ssl_session_cache off;
        ssl_session_tickets on;
        location / {
            proxy_pass http://127.0.0.1:$GW_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_buffering off;
            proxy_request_buffering off;
$([ -z "$NGINX_BUFFER" ] || echo "            proxy_buffer_size $NGINX_BUFFER; proxy_buffers 4 $NGINX_BUFFER;")
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
EOF
}
NGINX_VERSION=missing
if [ -x "$NGINX" ]; then
    NGINX_STATE=""
    NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*version: //' || true)
    rm -rf "$NGX_DIR" && mkdir -p "$NGX_DIR"
    cat >"$NGX_DIR/nginx.conf" <<EOF
worker_processes 1;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX_DIR/client_body;
    proxy_temp_path $NGX_DIR/proxy;
    fastcgi_temp_path $NGX_DIR/fastcgi;
    uwsgi_temp_path $NGX_DIR/uwsgi;
    scgi_temp_path $NGX_DIR/scgi;
$(nginx_server $NGINX_PORT cert.pem key.pem)
    # the same with the RSA-2048 certificate (the handshake rows only)
$(nginx_server $NGINX_RSA_PORT rsa-cert.pem rsa-key.pem)
}
EOF
    $RELAY "$NGINX" -p "$NGX_DIR" -c "$NGX_DIR/nginx.conf" -e "$NGX_DIR/error.log" -g 'daemon off;' \
        2>>"$NGX_DIR/error.log" & nginx_pid=$!; pids+=($nginx_pid)
else
    NGINX_STATE="(nginx missing)"
fi
sleep 0.5
if [ -z "$NGINX_STATE" ] && ! kill -0 "$nginx_pid" 2>/dev/null; then NGINX_STATE="(nginx failed: $OUT/nginx/error.log)"; fi

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
# Handshake rates are compared across processes: measured in rounds, each round running every target
# once, so that the machine's drift during the run (it is shared) touches them all alike.
handshake_targets=(gateway "ws://127.0.0.1:$GW_PORT/" floor "ws://127.0.0.1:$FLOOR_PORT/"
                   hs256 "ws://127.0.0.1:$HS_PORT/?token=$HS_TOKEN" es256 "ws://127.0.0.1:$ES_PORT/?token=$ES_TOKEN")
if [ -x "$C_WEBSOCKSY" ]; then
    $RELAY "$C_WEBSOCKSY" -l 127.0.0.1 -p $C_PORT -c host=tcp://127.0.0.1 -c port=$PEER_PORT -c framing=binary \
        2>/dev/null & c_pid=$!; pids+=($c_pid)
    sleep 0.5
    handshake_targets+=(c "ws://127.0.0.1:$C_PORT/")
else
    R[handshake,c]="(not built: bench/c-websocksy.sh)"; R[handshake_cpu,c]="-"
fi
declare -A rounds
for _ in $(seq "$RUNS"); do
    for ((i = 0; i < ${#handshake_targets[@]}; i += 2)); do
        rounds[${handshake_targets[i]}]+="$($LOAD "$OUT/wsload" -q -d "$DURATION" -M handshake -c 10 \
            -u "${handshake_targets[i + 1]}" | tee -a "$OUT/wsload.log" | field msgs_per_s) "
    done
done
for ((i = 0; i < ${#handshake_targets[@]}; i += 2)); do
    name=${handshake_targets[i]}
    R[handshake,$name]=$(printf '%s\n' ${rounds[$name]} | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")
done

# CPU time a process spends per upgrade (user + system, from /proc): what one upgrade costs the
# relay, whichever process the run's throughput is limited by.
cpu_per_upgrade() {  # PID PORT -> microseconds
    local before after upgrades
    before=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    upgrades=$($LOAD "$OUT/wsload" -q -d "$DURATION" -M handshake -c 10 -u "ws://127.0.0.1:$2/" | field upgrades)
    after=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$upgrades" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
}
R[handshake_cpu,gateway]=$(cpu_per_upgrade "${pids[2]}" $GW_PORT)
R[handshake_cpu,floor]=$(cpu_per_upgrade "$floor_pid" $FLOOR_PORT)
if [ -x "$C_WEBSOCKSY" ]; then
    R[handshake_cpu,c]=$(cpu_per_upgrade "$c_pid" $C_PORT)
    kill $c_pid
fi
# Two workers: the load generator and the peer share the two cores with them (no pinning here).
R[echo100,w2]=$(LOAD="" measure msgs_per_s -M echo -c 100 -s 1024 -u ws://127.0.0.1:$W2_PORT/)
R[handshake,w2]=$(LOAD="" measure msgs_per_s -M handshake -c 10 -u ws://127.0.0.1:$W2_PORT/)
R[echo100,exec]=$(measure msgs_per_s -M echo -c 100 -s 1024 -u ws://127.0.0.1:$EXEC_PORT/)

# Idle capacity: connections held up to the descriptor limit, and the gateway's RSS per connection.
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
idle() {  # PORT CONNECTIONS PID -> "open/probed bytes_per_connection"
    local before after line result
    before=$(rss_kb "$3")
    "$OUT/wsload" -u "ws://127.0.0.1:$1/" -M idle -c "$2" -r 4000 -T 60 -d 6 -q 2>"$OUT/idle.err" >"$OUT/idle.out" &
    local load=$!
    for _ in $(seq 600); do grep -q "# idle:" "$OUT/idle.err" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    after=$(rss_kb "$3")
    wait $load
    result=$(cat "$OUT/idle.out")
    echo "$(echo "$result" | field open_at_end)/$(echo "$result" | field msgs) $(( (after - before) * 1024 / $2 ))"
}
hard=$(ulimit -Hn)
"$GATEWAY" -l 127.0.0.1 -p $IDLE_PORT -k 0 --max-connections "$hard" -c host=echo:// 2>"$OUT/gateway-idle.log" & idle_pid=$!; pids+=($idle_pid)
sleep 0.5
read -r R[idle_echo,open] R[idle_echo,bytes] <<<"$(idle $IDLE_PORT $((hard - 20)) $idle_pid)"
kill $idle_pid
gw_pid=${pids[2]}
read -r R[idle_tcp,open] R[idle_tcp,bytes] <<<"$(idle $GW_PORT $((hard / 2 - 20)) $gw_pid)"

# Instructions per echoed 1 KiB message (callgrind counts them, unaffected by machine noise): two runs
# of different length, so start-up cancels out in the difference.
# With `admin`, the admin listener is on and scraped once a second: the metrics must not cost the
# message path anything (the per-message figure stays the same).
callgrind() {  # SECONDS [admin] -> "instructions messages"
    local admin=()
    [ "${2:-}" = admin ] && admin=(--admin-listen 127.0.0.1:$ADMIN_PORT)
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$GATEWAY" -l 127.0.0.1 -p $CG_PORT -k 0 "${admin[@]}" \
        -c host=tcp://127.0.0.1:$PEER_PORT -c framing=binary 2>"$OUT/callgrind.log" &
    local vg=$!
    sleep 3
    local msgs scraper=""
    if [ ${#admin[@]} -gt 0 ]; then
        ( while :; do python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()" 2>/dev/null \
              http://127.0.0.1:$ADMIN_PORT/metrics; sleep 1; done ) & scraper=$!
    fi
    msgs=$("$OUT/wsload" -u ws://127.0.0.1:$CG_PORT/ -c 1 -s 1024 -d "$1" -q | field msgs)
    [ -n "$scraper" ] && kill $scraper
    kill -TERM $vg; wait $vg || true
    echo "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$OUT/callgrind.log") $msgs"
}
if command -v valgrind >/dev/null; then
    read -r i1 m1 <<<"$(callgrind 2)"
    read -r i2 m2 <<<"$(callgrind 4)"
    R[instructions]=$(( (i2 - i1) / (m2 - m1) ))
    read -r i1 m1 <<<"$(callgrind 2 admin)"
    read -r i2 m2 <<<"$(callgrind 4 admin)"
    R[instructions_admin]=$(( (i2 - i1) / (m2 - m1) ))
else
    R[instructions]="(valgrind missing)"
    R[instructions_admin]="(valgrind missing)"
fi

# JSON stream: deflatebench is the TCP peer (JSON lines of 100-300 bytes, written as fast as the
# gateway takes them) and the client (offering permessage-deflate as Chromium does, inflating and
# checking every byte); one gateway with --compression on, one with it off.
json_stream() {  # PORT PEER_PORT -> "median MBps, median ratio, errors"
    local port=$1 peer=$2 lines=()
    for _ in $(seq "$RUNS"); do
        lines+=("$($LOAD "$OUT/deflatebench" -q -d "$DURATION" -u 127.0.0.1:$port -P $peer | tee -a "$OUT/deflatebench.log" || true)")
    done
    median() { for l in "${lines[@]}"; do echo "$l" | field "$1"; done | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
    # a run without a RESULT line (no upgrade, no peer connection) counts as one error
    echo "$(median MBps) $(median ratio) $(for l in "${lines[@]}"; do echo "$l" | field errors | grep . || echo 1; done | awk '{ s += $1 } END { print s }')"
}
read -r R[json_z,MBps] R[json_z,ratio] R[json_z,errors] <<<"$(json_stream $DZ_PORT $DZ_PEER)"
read -r R[json_u,MBps] _ R[json_u,errors] <<<"$(json_stream $DU_PORT $DU_PEER)"
json_errors() { [ "$1" = 0 ] || echo " ($1 errors: see $OUT/deflatebench.log)"; }

# Instructions per compressed ~1 KiB JSON message (gateway defaults: level 6, window 11, context
# takeover), as for echo: the difference of two runs of 1000 and 3000 messages, so start-up, the
# upgrade and the close cancel out; nothing else is subtracted (reading the peer and framing the
# lines are included, and are about 3% of it).
callgrind_json() {  # MESSAGES -> "instructions messages"
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$GATEWAY" -l 127.0.0.1 -p $CGZ_PORT -k 0 --compression on \
        -c host=tcp://127.0.0.1:$CGZ_PEER "${JSON[@]}" 2>"$OUT/callgrind-deflate.log" &
    local vg=$! msgs
    msgs=$("$OUT/deflatebench" -q -T 30 -n "$1" -s 1024 -u 127.0.0.1:$CGZ_PORT -P $CGZ_PEER | field msgs || true)
    kill -TERM $vg; wait $vg || true
    echo "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$OUT/callgrind-deflate.log") $msgs"
}
if command -v valgrind >/dev/null; then
    read -r i1 m1 <<<"$(callgrind_json 1000)"
    read -r i2 m2 <<<"$(callgrind_json 3000)"
    R[instructions_json]=$(( (i2 - i1) / (m2 - m1) ))
else
    R[instructions_json]="(valgrind missing)"
fi

# wss: the same client (wssbench) over plain TCP and over TLS to one TLS-enabled gateway, and over TLS
# to nginx in front of the plain gateway; all three reach the same peer.
wss() {  # FIELD PORT ARGS...
    local fieldname=$1 port=$2; shift 2
    local values=()
    for _ in $(seq "$RUNS"); do
        values+=("$($LOAD "$OUT/wssbench" -d "$DURATION" -a 127.0.0.1:$port "$@" | tee -a "$OUT/wssbench.log" | field "$fieldname")")
    done
    printf '%s\n' "${values[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"
}
wss_tests=("wss_stream:MBps:-M stream -s 65536" "wss_echo100:msgs_per_s:-M echo -c 100 -s 1024"
           "wss_handshake:upgrades_per_s:-M handshake -c 10")
for t in "${wss_tests[@]}"; do
    IFS=: read -r name fieldname args <<<"$t"
    R[$name,plain]=$(wss "$fieldname" $TLS_PORT $args -p)
    R[$name,tls]=$(wss "$fieldname" $TLS_PORT $args)
    if [ -z "$NGINX_STATE" ]; then R[$name,nginx]=$(wss "$fieldname" $NGINX_PORT $args); else R[$name,nginx]=$NGINX_STATE; fi
done
R[wss_handshake_rsa,plain]=$(wss upgrades_per_s $TLS_RSA_PORT -M handshake -c 10 -p)
R[wss_handshake_rsa,tls]=$(wss upgrades_per_s $TLS_RSA_PORT -M handshake -c 10)
if [ -z "$NGINX_STATE" ]; then R[wss_handshake_rsa,nginx]=$(wss upgrades_per_s $NGINX_RSA_PORT -M handshake -c 10); else R[wss_handshake_rsa,nginx]=$NGINX_STATE; fi
# Returning clients: each of wssbench's connection slots resumes from the ticket of its previous connection.
R[wss_resumed,plain]=${R[wss_handshake,plain]}; R[wss_resumed_rsa,plain]=${R[wss_handshake_rsa,plain]}
R[wss_resumed,tls]=$(wss upgrades_per_s $TLS_PORT -M handshake -c 10 -r)
R[wss_resumed_rsa,tls]=$(wss upgrades_per_s $TLS_RSA_PORT -M handshake -c 10 -r)
if [ -z "$NGINX_STATE" ]; then
    R[wss_resumed,nginx]=$(wss upgrades_per_s $NGINX_PORT -M handshake -c 10 -r)
    R[wss_resumed_rsa,nginx]=$(wss upgrades_per_s $NGINX_RSA_PORT -M handshake -c 10 -r)
else
    R[wss_resumed,nginx]=$NGINX_STATE; R[wss_resumed_rsa,nginx]=$NGINX_STATE
fi
# CPU time on the relay's core per upgrade (user + system from /proc, one run): the TLS gateway's, or
# nginx's (master and worker) and the plain gateway's behind it.
wss_cpu() {  # "PIDS" PORT [-p] -> microseconds
    local procs=$1 port=$2; shift 2
    local before after upgrades
    ticks() { for p in $procs; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | awk '{ s += $1 } END { print s }'; }
    before=$(ticks)
    upgrades=$($LOAD "$OUT/wssbench" -d "$DURATION" -a 127.0.0.1:$port -M handshake -c 10 "$@" | tee -a "$OUT/wssbench.log" | field upgrades)
    after=$(ticks)
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$upgrades" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
}
R[wss_cpu,plain]=$(wss_cpu "$tls_pid" $TLS_PORT -p)
R[wss_cpu,tls]=$(wss_cpu "$tls_pid" $TLS_PORT)
R[wss_cpu_rsa,plain]=$(wss_cpu "$tls_rsa_pid" $TLS_RSA_PORT -p)
R[wss_cpu_rsa,tls]=$(wss_cpu "$tls_rsa_pid" $TLS_RSA_PORT)
if [ -z "$NGINX_STATE" ]; then
    R[wss_cpu,nginx]=$(wss_cpu "$nginx_pid $(ps -o pid= --ppid "$nginx_pid") ${pids[2]}" $NGINX_PORT)
    R[wss_cpu_rsa,nginx]=$(wss_cpu "$nginx_pid $(ps -o pid= --ppid "$nginx_pid") ${pids[2]}" $NGINX_RSA_PORT)
else
    R[wss_cpu,nginx]=$NGINX_STATE
    R[wss_cpu_rsa,nginx]=$NGINX_STATE
fi

# the wss table: ws:// and the gateway's own TLS, then nginx's TLS in front of the plain gateway
wss_row() {  # LABEL NAME
    local p=${R[$2,plain]} t=${R[$2,tls]} n=${R[$2,nginx]}
    echo "| $1 | $p | $t | $(ratio "$t" "$p") | $n | $(ratio "$t" "$n") |"
}
wss_table() {
    echo "| wssbench, median of $RUNS × ${DURATION}s | ws:// | wss:// (TLS 1.3, P-256 unless RSA-2048) | wss / ws | wss:// nginx → ws:// websocksy | wss: websocksy / nginx |"
    echo "|---|---|---|---|---|---|"
    wss_row "stream, 1 conn, 64 KiB: MB/s" wss_stream
    wss_row "echo, 100 conns, 1 KiB: msgs/s" wss_echo100
    wss_row "handshake, 10 conns: upgrades/s" wss_handshake
    wss_row "handshake, 10 conns: CPU µs per upgrade on the relay's core (lower is better)" wss_cpu
    wss_row "RSA-2048 certificate: handshake, 10 conns: upgrades/s" wss_handshake_rsa
    wss_row "RSA-2048 certificate: CPU µs per upgrade on the relay's core (lower is better)" wss_cpu_rsa
    wss_row "resumed sessions (tickets, \`wssbench -r\`), 10 conns: upgrades/s" wss_resumed
    wss_row "RSA-2048 certificate, resumed sessions: upgrades/s" wss_resumed_rsa
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

table=$(cat <<EOT
| test (wsload, median of $RUNS × ${DURATION}s) | no-relay ceiling | socat (raw TCP) | websocksy | websocksy / socat | websocksy / ceiling |
|---|---|---|---|---|---|
| echo, 1 conn, 64 B: msgs/s | ${R[echo1,ceiling]} | ${R[echo1,socat]} | ${R[echo1,gateway]} | $(ratio "${R[echo1,gateway]}" "${R[echo1,socat]}") | $(ratio "${R[echo1,gateway]}" "${R[echo1,ceiling]}") |
| echo, 1 conn, 64 B: p99 µs | ${R[echo1p99,ceiling]} | ${R[echo1p99,socat]} | ${R[echo1p99,gateway]} | $(ratio "${R[echo1p99,gateway]}" "${R[echo1p99,socat]}") | $(ratio "${R[echo1p99,gateway]}" "${R[echo1p99,ceiling]}") |
| echo, 100 conns, 1 KiB: msgs/s | ${R[echo100,ceiling]} | ${R[echo100,socat]} | ${R[echo100,gateway]} | $(ratio "${R[echo100,gateway]}" "${R[echo100,socat]}") | $(ratio "${R[echo100,gateway]}" "${R[echo100,ceiling]}") |
| echo, 100 conns, 1 KiB: p99 µs | ${R[echo100p99,ceiling]} | ${R[echo100p99,socat]} | ${R[echo100p99,gateway]} | $(ratio "${R[echo100p99,gateway]}" "${R[echo100p99,socat]}") | $(ratio "${R[echo100p99,gateway]}" "${R[echo100p99,ceiling]}") |
| stream, 1 conn, 64 KiB: MB/s | ${R[stream,ceiling]} | ${R[stream,socat]} | ${R[stream,gateway]} | $(ratio "${R[stream,gateway]}" "${R[stream,socat]}") | $(ratio "${R[stream,gateway]}" "${R[stream,ceiling]}") |

| handshakes (each connects to the peer; rates: median of $RUNS rounds, each round every target) | upgradefloor | C websocksy | websocksy | websocksy / floor | websocksy / C websocksy |
|---|---|---|---|---|---|
| 10 conns: upgrades/s | ${R[handshake,floor]} | ${R[handshake,c]} | ${R[handshake,gateway]} | $(ratio "${R[handshake,gateway]}" "${R[handshake,floor]}") | $(ratio "${R[handshake,gateway]}" "${R[handshake,c]}") |
| CPU time of the relay per upgrade: µs | ${R[handshake_cpu,floor]} | ${R[handshake_cpu,c]} | ${R[handshake_cpu,gateway]} | $(ratio "${R[handshake_cpu,gateway]}" "${R[handshake_cpu,floor]}") | $(ratio "${R[handshake_cpu,gateway]}" "${R[handshake_cpu,c]}") |

| more (websocksy) | figure |
|---|---|
| echo, 100 conns, 1 KiB, \`-w 2\`: msgs/s (\`-w 1\`: ${R[echo100,gateway]}) | ${R[echo100,w2]} |
| handshake, 10 conns, \`-w 2\`: upgrades/s (\`-w 1\`: ${R[handshake,gateway]}) | ${R[handshake,w2]} |
| echo, 100 conns, 1 KiB, each through its own \`exec:///bin/cat\`: msgs/s, ratio to the TCP peer (${R[echo100,gateway]}) | ${R[echo100,exec]}, $(ratio "${R[echo100,exec]}" "${R[echo100,gateway]}") |
| handshake with a token, HS256 (\`--auth-secret\`): upgrades/s, ratio to none | ${R[handshake,hs256]}, $(ratio "${R[handshake,hs256]}" "${R[handshake,gateway]}") |
| handshake with a token, ES256 (\`--auth-keys\`, P-256): upgrades/s, ratio to none | ${R[handshake,es256]}, $(ratio "${R[handshake,es256]}" "${R[handshake,gateway]}") |
| idle on echo://: connections open/probed, RSS bytes per connection | ${R[idle_echo,open]}, ${R[idle_echo,bytes]} |
| idle bridged to TCP: connections open/probed, RSS bytes per connection | ${R[idle_tcp,open]}, ${R[idle_tcp,bytes]} |
| instructions per echoed 1 KiB message (callgrind, TCP peer) | ${R[instructions]} |
| the same with the admin listener on, /metrics scraped every second | ${R[instructions_admin]} |
| json stream compressed, 1 conn, 155 B lines (deflatebench, \`--compression on\`): payload MB/s, ratio | ${R[json_z,MBps]}, ${R[json_z,ratio]}$(json_errors "${R[json_z,errors]}") |
| json stream uncompressed, 1 conn, 155 B lines (\`--compression off\`): payload MB/s | ${R[json_u,MBps]}$(json_errors "${R[json_u,errors]}") |
| instructions per compressed ~1 KiB JSON message (callgrind, level 6, window 11) | ${R[instructions_json]} |

$(wss_table)
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
    echo "nginx ($NGINX_VERSION): TLS in front of the plain websocksy instance, on the relay's core with it:"
    echo "\`worker_processes 1\`; \`listen ssl\` with the TLS instance's certificate and key, \`ssl_protocols TLSv1.3\`,"
    echo "\`ssl_ecdh_curve prime256v1\`, \`Ciphersuites TLS_AES_256_GCM_SHA384\` (what websocksy and wssbench negotiate),"
    echo "session tickets on and session cache off, as websocksy; \`proxy_pass http://127.0.0.1:GW\`, \`proxy_http_version 1.1\`,"
    echo "\`Upgrade \$http_upgrade\`, \`Connection upgrade\`, \`proxy_buffering off\`, \`proxy_request_buffering off\`, read/send"
    echo "timeouts 3600 s, \`proxy_buffer_size ${NGINX_BUFFER:-(default, one page)}\` (an upgraded connection is relayed through"
    echo "one such buffer each way; nginx's default 4 KiB halves its stream figure); everything else nginx's defaults. Full"
    echo "config: \`$OUT/nginx/nginx.conf\`. CPU per upgrade: user + system time from /proc of the TLS gateway, or of nginx"
    echo "(master and worker) plus the plain gateway, over one handshake run. wssbench echo: one epoll loop, each connection"
    echo "sends a message, waits for all of it to come back (checked), sends the next. RSA-2048 rows: a third gateway instance and"
    echo "a second nginx server with an RSA-2048 certificate (\`openssl req -newkey rsa:2048\`), otherwise the same."
    echo "upgradefloor: \`bench/upgradefloor.c\`, the least work per upgrade (accept, connect the peer, 101, Close, close),"
    echo "on the relay's core: the handshake ceiling of this layout. C websocksy: built by \`bench/c-websocksy.sh\` (-O2) and"
    echo "run on the relay's core as \`websocksy -c host=tcp://127.0.0.1 -c port=PEER -c framing=binary 2>/dev/null\`."
    echo "Resumed rows: \`wssbench -r\`, each of the 10 connection slots offers the session (ticket) of its previous"
    echo "connection; the ws:// column repeats the full-handshake row's."
    echo "json stream: \`bench/deflatebench.c\` is both the TCP peer (seeded JSON lines, 155 B on average, written as fast as"
    echo "the gateway takes them) and the client (offers \`permessage-deflate; client_max_window_bits\`, inflates, checks every"
    echo "byte); websocksy with \`-c framing=newline -c framing-config=lf\` and \`--compression on\` (defaults: level 6, window"
    echo "11 bits, context takeover) or off. Ratio = payload bytes / bytes of frames received."
    echo
    echo "$table"
} >> BENCHMARKS.md
