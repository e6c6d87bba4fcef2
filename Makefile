# websocksy — build, test, run, install.
PREFIX    ?= /usr/local
SWIFT     ?= swift
PYTHON    ?= python3
CC        ?= cc
VENV      := .venv
BINDIR    := .build/release
RELEASE   := $(BINDIR)/websocksy
# Plugins go beside the binary, where a checkout's ./websocksy finds them without flags.
PLUGINDIR := $(BINDIR)/plugins
TESTPLUGINDIR := .build/test-plugins
INSTALL_PLUGINDIR := $(PREFIX)/lib/websocksy
HEADER    := Sources/CWebsocksy/include/websocksy.h
PLUGIN_CFLAGS := -std=c11 -O2 -fPIC -shared -Wall -Wextra -Wpedantic -Werror -I Sources/CWebsocksy/include
PLUGINS   := $(patsubst Plugins-C/%.c,$(PLUGINDIR)/%.so,$(wildcard Plugins-C/*.c))
TESTPLUGINS := $(patsubst Tests/plugins/%.c,$(TESTPLUGINDIR)/%.so,$(wildcard Tests/plugins/*.c)) \
               $(patsubst Plugins-C/%.c,$(TESTPLUGINDIR)/%.so,$(wildcard Plugins-C/*.c))
CONFIGS   := $(wildcard config/*.cfg)

.PHONY: all build plugins test unit-test integration-test header-check fuzz fuzz-smoke test-asan run bench install clean

all: build plugins

build:
	$(SWIFT) build -c release -Xcc '-DWEBSOCKSY_PLUGIN_DIR="$(INSTALL_PLUGINDIR)"'
	ln -sf $(RELEASE) websocksy

plugins: build $(PLUGINS)

$(PLUGINDIR)/%.so: Plugins-C/%.c $(HEADER)
	@mkdir -p $(PLUGINDIR)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<

# Backends share the template and route line code in Plugins-C/common/ (outside the wildcard);
# LIBS_<name> is what a backend links besides libc.
ROUTE_SRC := Plugins-C/common/route.c
ROUTE_DEPS := $(ROUTE_SRC) Plugins-C/common/route.h
LIBS_backend_redis := -lhiredis

$(PLUGINDIR)/backend_%.so: Plugins-C/backend_%.c $(HEADER) $(ROUTE_DEPS)
	@mkdir -p $(PLUGINDIR)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $< $(ROUTE_SRC) $(LIBS_backend_$*)

$(TESTPLUGINDIR)/%.so: Tests/plugins/%.c $(HEADER)
	@mkdir -p $(TESTPLUGINDIR)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<

$(TESTPLUGINDIR)/%.so: Plugins-C/%.c $(HEADER)
	@mkdir -p $(TESTPLUGINDIR)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $<

$(TESTPLUGINDIR)/backend_%.so: Plugins-C/backend_%.c $(HEADER) $(ROUTE_DEPS)
	@mkdir -p $(TESTPLUGINDIR)
	$(CC) $(PLUGIN_CFLAGS) -o $@ $< $(ROUTE_SRC) $(LIBS_backend_$*)

# The public header must stand alone in C99 and C11 (and C++) without warnings.
header-check:
	for std in c99 c11; do \
		$(CC) -std=$$std -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c $(HEADER) || exit 1; \
	done
	if command -v c++ >/dev/null; then c++ -Wall -Wextra -Werror -fsyntax-only -x c++ $(HEADER); fi

# The independent test client (Python websockets) lives in a virtualenv made here.
$(VENV)/.installed: Tests/integration/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r Tests/integration/requirements.txt
	touch $@

test: header-check unit-test integration-test fuzz-smoke test-asan

# libFuzzer targets: the frame reader, the handshake parser, the configuration parsers, the PROXY header parser.
SECONDS ?= 60
fuzz:
	Tests/Fuzz/run.sh $(SECONDS)

fuzz-smoke:
	Tests/Fuzz/run.sh 15

# The integration tests against an address-sanitized build.
test-asan: plugins $(TESTPLUGINS) $(TESTPLUGINDIR)/malloc_count.so $(VENV)/.installed
	$(SWIFT) build --scratch-path .build-asan -c debug -Xswiftc -sanitize=address -Xcc -fsanitize=address
	mkdir -p .build-asan/debug/plugins && cp $(PLUGINS) .build-asan/debug/plugins/
	WEBSOCKSY_BIN=$(CURDIR)/.build-asan/debug/websocksy WEBSOCKSY_TEST_PLUGINS=$(CURDIR)/$(TESTPLUGINDIR) \
		ASAN_OPTIONS=detect_leaks=0 SWIFT_BACKTRACE=enable=no $(VENV)/bin/python -m pytest -q Tests/integration \
		--deselect Tests/integration/test_allocations.py $(ASAN_MEASURED)

# ASan replaces malloc and slows everything down: allocation counts, RSS and latency are measured
# on the release build in `integration-test`, not here.
ASAN_MEASURED := $(addprefix --deselect Tests/integration/test_robustness.py::, \
	test_a_second_client_upgrades_quickly_while_another_floods_empty_fragments \
	test_a_million_unread_pings_keep_memory_bounded test_rss_returns_near_the_baseline_after_5000_connections) \
	--deselect Tests/integration/test_hostile.py::test_unread_echo_replies_are_held_within_the_buffer_budget \
	$(addprefix --deselect Tests/integration/test_compression.py::, test_decompression_bomb_closes_1009_with_flat_memory \
	test_inflating_respects_backpressure test_idle_compressed_connections_cost_little_memory)

unit-test:
	$(SWIFT) test

$(TESTPLUGINDIR)/malloc_count.so: Tests/tools/malloc_count.c
	@mkdir -p $(TESTPLUGINDIR)
	$(CC) -O2 -fPIC -shared -Wall -Wextra -o $@ $< -ldl

integration-test: build plugins $(TESTPLUGINS) $(TESTPLUGINDIR)/malloc_count.so $(VENV)/.installed
	WEBSOCKSY_BIN=$(CURDIR)/$(RELEASE) WEBSOCKSY_TEST_PLUGINS=$(CURDIR)/$(TESTPLUGINDIR) \
		$(VENV)/bin/python -m pytest -q Tests/integration

# The demo: the page in demo/, /echo and /lines (a line service started here) on port 8001, on
# localhost only: the echo and the line service are for this machine. `make run LISTEN=::` (or
# LISTEN=0.0.0.0) serves other machines too; the flag overrides demo.cfg's `listen`.
run: LISTEN ?= 127.0.0.1
run: build plugins
	@$(PYTHON) demo/lineservice.py 127.0.0.1:8002 & service=$$!; \
	trap 'kill $$service 2>/dev/null' EXIT INT TERM; \
	echo "open http://localhost:8001/ in a browser (listening on $(LISTEN); make run LISTEN=:: to serve other machines)"; \
	./$(RELEASE) config/demo.cfg -l $(LISTEN)

bench: build
	bench/run.sh

install: build plugins
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/websocksy \
		$(DESTDIR)$(INSTALL_PLUGINDIR) $(DESTDIR)$(PREFIX)/share/websocksy $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(RELEASE) $(DESTDIR)$(PREFIX)/bin/websocksy
	install -m 755 $(dir $(RELEASE))websocksy-replay $(DESTDIR)$(PREFIX)/bin/websocksy-replay
	install -m 644 $(PLUGINS) $(DESTDIR)$(INSTALL_PLUGINDIR)/
	install -m 644 $(HEADER) $(DESTDIR)$(PREFIX)/include/websocksy.h
	# A copy one level down, so plugins that include "../websocksy.h" build with -I$(PREFIX)/include/websocksy.
	install -m 644 $(HEADER) $(DESTDIR)$(PREFIX)/include/websocksy/websocksy.h
	install -m 644 $(CONFIGS) config/websocksy.service config/websocksy.socket config/nginx-websocksy.conf \
		Plugins-C/*.md $(DESTDIR)$(PREFIX)/share/websocksy/
	install -m 644 docs/websocksy.1 $(DESTDIR)$(PREFIX)/share/man/man1/websocksy.1

clean:
	rm -rf .build .build-fuzz .build-asan $(VENV) websocksy
