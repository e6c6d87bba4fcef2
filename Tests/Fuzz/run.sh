#!/usr/bin/env bash
# Builds the libFuzzer targets (the core library instrumented, each harness linked with swiftc) and
# runs each for SECONDS (default 60). Seeds come from Tests/Fuzz/corpus/TARGET; what the fuzzer
# finds accumulates in .build-fuzz/corpus/TARGET; a crash leaves its input in .build-fuzz/ and fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
F=.build-fuzz/debug
swift build --scratch-path .build-fuzz -c debug --target WebsocksyCore \
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address 2>&1 | tail -1
for target in frames handshake config proxy; do
    source=Tests/Fuzz/Fuzz$(tr '[:lower:]' '[:upper:]' <<<"${target:0:1}")${target:1}.swift
    swiftc -sanitize=fuzzer,address -parse-as-library -g -I $F/Modules \
        -Xcc -fmodule-map-file=$F/CLinux.build/module.modulemap -Xcc -fmodule-map-file=$F/CWebsocksy.build/module.modulemap \
        -Xcc -fmodule-map-file=Sources/CNettle/module.modulemap -Xcc -fmodule-map-file=Sources/CGnuTLS/module.modulemap \
        -Xcc -fmodule-map-file=Sources/CZlib/module.modulemap \
        -Xcc -I -Xcc Sources/CLinux/include -Xcc -I -Xcc Sources/CWebsocksy/include \
        "$source" $F/WebsocksyCore.build/*.o $F/CLinux.build/*.o $F/CWebsocksy.build/*.o -lnettle -lgnutls -lz -lcrypt \
        -o "$F/fuzz-$target" > "$F/link-$target.log" 2>&1 \
        || { grep -v "Cannot export local symbol" "$F/link-$target.log"; echo "fuzz $target: build failed"; exit 1; }
    mkdir -p ".build-fuzz/corpus/$target"
    echo "fuzz $target: ${SECONDS_EACH}s"
    status=0
    SWIFT_BACKTRACE=enable=no "$F/fuzz-$target" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -artifact_prefix=.build-fuzz/crash-$target- ".build-fuzz/corpus/$target" "Tests/Fuzz/corpus/$target" \
        > "$F/run-$target.log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|stat::new_units_added)|ERROR|SUMMARY" "$F/run-$target.log" || true
    if [ "$status" -ne 0 ] || ls .build-fuzz/crash-$target-* >/dev/null 2>&1; then
        echo "fuzz $target: crash, input saved as $(ls .build-fuzz/crash-$target-*)"
        exit 1
    fi
done
