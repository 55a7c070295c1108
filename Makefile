# Every target builds with CGO_ENABLED=0, as releases do: mixing cgo and
# non-cgo builds recompiles everything (minutes on small machines).
export CGO_ENABLED := 0
GO ?= go
BIN := bin/kubectl-trace_svc
FUZZTIME ?= 10s

.PHONY: build install test test-race fuzz bench bench-ratio fixtures lint tidy-check ci

build: ## build the plugin into ./bin
	$(GO) build -trimpath -o $(BIN) ./cmd/kubectl-trace_svc

install: ## install kubectl-trace_svc into GOBIN so "kubectl trace-svc" finds it
	$(GO) install -trimpath ./cmd/kubectl-trace_svc

test: ## unit and integration tests (the README's test command)
	$(GO) test ./...

test-race: ## concurrent packages under the race detector (needs cgo)
	CGO_ENABLED=1 $(GO) test -race ./trace/...

fuzz: ## run every fuzz target for FUZZTIME each
	@for target in $$($(GO) test -list '^Fuzz' ./trace/iptables | grep '^Fuzz'); do \
		echo "fuzz $$target"; \
		$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./trace/iptables || exit 1; \
	done

bench: ## parser and simulator benchmarks on a generated 10,000-Service dump
	$(GO) test -run '^$$' -bench . -benchmem ./trace/iptables

bench-ratio: ## whole-command time and peak RSS against grep -c on the same dump
	$(GO) test -run '^TestBenchRatio$$' -v -count=1 ./test/bench -args -bench-ratio

fixtures: ## regenerate kube-proxy fixtures from real kube-proxy code (slow; needs root)
	hack/kpfixtures/gen.sh v1.29.6 v1.37.2 v1.22.17

lint: ## gofmt, vet, tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

ci: lint test test-race fuzz
