# The two commands of the README. Both install what is missing first.
.PHONY: dev test toolchain build bench

GO ?= go
BIN := .changeops/bin/changeops

toolchain:
	scripts/toolchain

build:
	$(GO) build -o $(BIN) .

# Temporal dev server + UI, worker, watcher, endpoints and a demo repo.
dev: toolchain build
	$(BIN) dev

# Every test: unit, workflow (testsuite), replay, and end-to-end on real
# Temporal, Pulumi and git.
test: toolchain
	scripts/test

# Orchestration overhead against the bare Automation API, side by side.
bench: toolchain
	$(GO) run ./tests/bench $(BENCHFLAGS)
