# keyhole — make targets. `make test` and `make demo` do all set-up on a
# fresh machine (apt packages, the Vault binary, services), idempotently.
GO        ?= go
BIN       := bin
PROXY_PKGS := ./pgproxy/... ./creds/... ./identity/... ./audit/... ./admin/...

.PHONY: all build test test-go lint vet fmt-check bench bench-go fuzz setup vault demo clean

all: build

build:
	$(GO) build -o $(BIN)/keyhole ./cmd/keyhole

## setup: install and start what tests and the demo need (idempotent).
setup:
	bash scripts/setup.sh

## vault: build bin/vault from source via the tools module (idempotent).
vault:
	bash scripts/vault.sh build

## test: everything CI runs.
test: setup vault lint test-go

test-go: build
	KEYHOLE_REQUIRE_VAULT=1 $(GO) test -race -count=1 -timeout 30m $(PROXY_PKGS)
	KEYHOLE_REQUIRE_VAULT=1 $(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -vE '/(pgproxy|creds|identity|audit|admin)(/|$$)')

lint: vet fmt-check

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: Go benchmarks for parse+decide, then pgbench direct vs PgBouncer vs keyhole.
bench: setup build bench-go
	bash scripts/bench.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./sqlpolicy/...

## fuzz: a short run of every fuzz target, and a long differential run
## (generated statements keyhole allows must run as the policy's role).
FUZZTIME ?= 30s
DIFF_STATEMENTS ?= 200000
DIFF_SQLSMITH ?= 3000
fuzz:
	KEYHOLE_DIFF_STATEMENTS=$(DIFF_STATEMENTS) KEYHOLE_DIFF_SQLSMITH=$(DIFF_SQLSMITH) $(GO) test -run '^TestDifferential$$' -count=1 -timeout 180m -v ./internal/differential/
	$(GO) test -run '^$$' -fuzz FuzzAnalyze -fuzztime $(FUZZTIME) ./sqlpolicy/pganalyze/
	$(GO) test -run '^$$' -fuzz FuzzClientMessages -fuzztime $(FUZZTIME) ./pgproxy/
	$(GO) test -run '^$$' -fuzz FuzzStartup -fuzztime $(FUZZTIME) ./pgproxy/

## demo: the main job in one command.
demo: setup build
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)
