#!/usr/bin/env bash
# Builds the C websocksy (https://github.com/cbdevnet/websocksy), the program this gateway replaces,
# with -O2 into .build/bench/c-websocksy/, where `make bench` finds it and measures its handshake
# rate next to ours. Sources: C_WEBSOCKSY_SRC=DIR (a checkout), or a clone of the repository.
# Only the server is built (its built-in backend bridges to one TCP peer); it needs nettle-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.build/bench/c-websocksy
mkdir -p "$OUT"
SRC=${C_WEBSOCKSY_SRC:-}
if [ -z "$SRC" ]; then
    SRC=$OUT/src
    [ -d "$SRC/.git" ] || git clone -q https://github.com/cbdevnet/websocksy "$SRC"
fi
for f in websocksy.c builtins.c network.c websocket.c plugin.c config.c; do
    [ -f "$SRC/$f" ] || { echo "c-websocksy: $SRC/$f not found"; exit 1; }
done
# The makefile also builds plugins/; the server alone is these six files (its own link line).
(cd "$SRC" && cc -O2 -w -DPLUGINS='"plugins/"' -Wl,-export-dynamic websocksy.c builtins.c network.c websocket.c \
    plugin.c config.c -o "$OLDPWD/$OUT/websocksy" -lnettle -ldl)
echo "built $OUT/websocksy"
