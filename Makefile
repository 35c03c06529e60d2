# Rackstrap build, test and demo entry points. `make demo` and `make test`
# are the two commands of the README; both work on a fresh Debian 12 as root.
GO        ?= go
BIN       := bin
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# Longer fuzzing: `make fuzz FUZZTIME=5m`.
FUZZTIME  ?= 30s

.PHONY: all build rackstrap agent agent-static demo test test-deps bench bench-fleet e2e fuzz lint conformance clean

all: build

build: rackstrap agent

# The controller and CLI: static, no cgo.
rackstrap:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/rackstrap ./cmd/rackstrap

# The in-band agent: cgo for NVML (gcc needed); agent-static has no NVML.
agent:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/rackstrap-agent ./cmd/rackstrap-agent

agent-static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/rackstrap-agent-static ./cmd/rackstrap-agent

# The demo needs only the controller binary (no gcc, no root). As root it
# also hands the rack to a private slurmctld (installed first on Debian when
# missing; without it the demo says so and ends at Ready).
demo: rackstrap
	@bash test/demo/slurm-deps.sh
	$(BIN)/rackstrap demo --slurm auto

test-deps:
	bash test/install-deps.sh

# Runs every test (fuzz seed corpora included) under the race detector.
test: test-deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

# One QEMU machine, its BMC an ipmi_sim, from power-off to HandedOff against
# a real slurmctld (a failed hand-off retried), then decommissioned; and the
# demo against a private slurmctld (build tag e2e keeps it out of `make test`).
e2e: test-deps
	$(GO) test -race -count=1 -timeout 20m -tags e2e ./test/e2e/...

conformance:
	$(GO) test -race -count=1 -tags conformance -run Conformance ./bmc/...

bench: test-deps build
	bash test/bench/run.sh

# The fleet figures (10,000 simulated nodes); minutes, not part of CI.
bench-fleet: build
	bash test/bench/fleet/run.sh

# Runs each fuzz target for FUZZTIME (the seed corpora already run in `make test`).
fuzz:
	bash test/fuzz.sh $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN)
