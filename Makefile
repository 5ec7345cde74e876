# seuss: an OpenWhisk invoker that runs every activation in a unikernel context.
# `make help` lists the targets. `make run` and `make test` are all a new machine needs.

GO        ?= go
BIN       := bin
GOFLAGS   ?=
TESTFLAGS ?= -timeout 14m
DATA_DIR  ?= $(CURDIR)/.seuss
STANDALONE_FLAGS ?=

.PHONY: help build rootfs run test vet fmt bench figures clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/invoker (and bin/loadtest once it exists)
	$(GO) build $(GOFLAGS) -o $(BIN)/invoker ./cmd/invoker
	@if [ -f loadtest/main.go ]; then $(GO) build $(GOFLAGS) -o $(BIN)/loadtest ./loadtest; fi

rootfs: build ## build the read-only runtime roots (nodejs:20, python:3.11)
	$(GO) run $(GOFLAGS) ./runtimes/mkroot -out $(DATA_DIR)/roots

run: build rootfs ## build everything and start the standalone stack on embedded defaults
	$(BIN)/invoker standalone --data-dir $(DATA_DIR) $(STANDALONE_FLAGS)

vet: ## go vet and gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

test: vet build ## what CI runs: vet, build, every test tier (KVM and server tests included)
	$(GO) test $(GOFLAGS) $(TESTFLAGS) ./...

bench: ## Go benchmarks (speed is recorded in docs/benchmarks.md)
	$(GO) test $(GOFLAGS) -run '^$$' -bench . -benchtime 2s ./...

figures: rootfs ## the load generator's figures in docs/benchmarks.md (loadtest/figures.sh, a few minutes)
	loadtest/figures.sh $(BIN)/loadtest

clean: ## remove build output and the standalone data dir
	rm -rf $(BIN) $(DATA_DIR)
