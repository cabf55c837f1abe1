# keyhole — make targets. `make test` and `make demo` do all set-up on a
# fresh machine (apt packages, the Vault binary, services), idempotently.
GO        ?= go
BIN       := bin

.PHONY: all build generate test test-go lint vet fmt-check bench bench-go bench-proxy fuzz setup vault demo clean

all: build

build:
	$(GO) build -o $(BIN)/keyhole ./cmd/keyhole

## generate: regenerate the pg_query JSON decoder (after bumping pg_query_go;
## TestParseCorpus fails when it is stale).
generate:
	$(GO) generate ./sqlpolicy/pganalyze/internal/pgparse/

## setup: install and start what tests and the demo need (idempotent).
setup:
	bash scripts/setup.sh

## vault: build bin/vault from source via the tools module (idempotent).
vault:
	bash scripts/vault.sh build

## test: everything CI runs.
test: setup vault lint test-go

# test-go: every package under the race detector, none picked by hand. Most
# packages run goroutines (the proxies, credential renewal, audit sinks, the
# decision cache and Holder, the gateway's reloads), the subprocess tests run
# a keyhole that internal/fixture builds with -race too, and the whole suite
# under -race takes minutes (about 4 on the project's 2-core machine), far
# inside CI's 90. A new package is covered without editing this file.
test-go: build
	KEYHOLE_REQUIRE_VAULT=1 $(GO) test -race -count=1 -timeout 45m ./...

lint: vet fmt-check

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: Go benchmarks (parse+decide, audit, metrics), then pgbench direct vs
## PgBouncer vs a naive relay vs keyhole: tps, CPU per transaction, added
## latency, memory per idle session; and sysbench oltp_point_select against
## MariaDB direct vs the naive relay vs keyhole: queries/s, CPU per query
## (report in build/bench/).
bench: setup build bench-go bench-proxy

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./sqlpolicy/... ./audit/ ./admin/

## bench-proxy: scripts/bench.sh alone (BENCH_SECONDS, BENCH_ROUNDS, … in its header).
bench-proxy:
	bash scripts/bench.sh

## fuzz: a short run of every fuzz target in the repo (found by go test -list),
## then a long differential run (generated statements keyhole allows must run
## as the policy's role).
FUZZTIME ?= 30s
DIFF_STATEMENTS ?= 200000
DIFF_SQLSMITH ?= 3000
fuzz:
	GO=$(GO) bash scripts/fuzz.sh $(FUZZTIME)
	KEYHOLE_DIFF_STATEMENTS=$(DIFF_STATEMENTS) KEYHOLE_DIFF_SQLSMITH=$(DIFF_SQLSMITH) $(GO) test -run '^TestDifferential$$' -count=1 -timeout 180m -v ./internal/differential/

## demo: the main job in one command.
demo: setup build
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)
