# The two commands of the README. Both install what is missing first.
.PHONY: dev test toolchain dev-toolchain build bench

GO ?= go
BIN := .changeops/bin/changeops

# Everything the tests need; dev-toolchain is only what `changeops dev`
# runs (Pulumi, the provider, the Temporal CLI), so a newcomer's first
# command builds no server or database the demo never starts.
toolchain:
	scripts/toolchain

dev-toolchain:
	scripts/toolchain --dev

build:
	$(GO) build -o $(BIN) .

# Temporal dev server + UI, worker, watcher, endpoints and a demo repo.
dev: dev-toolchain build
	$(BIN) dev

# Every test: unit, workflow (testsuite), replay, and end-to-end on real
# Temporal, Pulumi and git.
test: toolchain
	scripts/test

# Orchestration overhead against the bare Automation API, side by side.
bench: toolchain
	$(GO) run ./tests/bench $(BENCHFLAGS)
