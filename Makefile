# websocksy — build, test, run, install.
PREFIX   ?= /usr/local
SWIFT    ?= swift
PYTHON   ?= python3
VENV     := .venv
RELEASE  := .build/release/websocksy
CONFIGS  := $(wildcard config/*.cfg)

.PHONY: all build test unit-test integration-test run bench install clean

all: build

build:
	$(SWIFT) build -c release
	ln -sf $(RELEASE) websocksy

# The independent test client (Python websockets) lives in a virtualenv made here.
$(VENV)/.installed: Tests/integration/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r Tests/integration/requirements.txt
	touch $@

test: unit-test integration-test

unit-test:
	$(SWIFT) test

integration-test: build $(VENV)/.installed
	WEBSOCKSY_BIN=$(CURDIR)/$(RELEASE) $(VENV)/bin/python -m pytest -q Tests/integration

bench: build
	bench/run.sh

run: build
	./$(RELEASE) config/echo.cfg

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/websocksy
	install -m 755 $(RELEASE) $(DESTDIR)$(PREFIX)/bin/websocksy
	install -m 644 Sources/CWebsocksy/include/websocksy.h $(DESTDIR)$(PREFIX)/include/websocksy.h
	install -m 644 $(CONFIGS) $(DESTDIR)$(PREFIX)/share/websocksy/

clean:
	rm -rf .build $(VENV) websocksy
