# Every target builds with CGO_ENABLED=0, as releases do: mixing cgo and
# non-cgo builds recompiles everything (minutes on small machines).
export CGO_ENABLED := 0
GO ?= go
BIN := bin/kubectl-trace_svc
FUZZTIME ?= 10s

.PHONY: build install demo test unit test-race fuzz bench bench-ratio bench-many-nodes fixtures docs docs-check lint tidy-check ci

# The plugin is two binaries installed side by side: kubectl-trace_svc runs
# simulate and version without linking the cluster client, and hands every
# other command to trace-svc-cluster (cmd/kubectl-trace_svc/main.go says why).
PLUGIN_CMDS := ./cmd/kubectl-trace_svc ./cmd/trace-svc-cluster

build: ## build the plugin (kubectl-trace_svc and trace-svc-cluster) into ./bin
	$(GO) build -trimpath -o $(dir $(BIN)) $(PLUGIN_CMDS)

install: ## install kubectl-trace_svc and trace-svc-cluster into GOBIN so "kubectl trace-svc" finds them
	$(GO) install -trimpath $(PLUGIN_CMDS)

DEMO_OUT ?= bin/demo

demo: build ## trace a Service of a recorded two-node cluster (testdata/demo): no cluster, no kubeconfig; the diagram goes to DEMO_OUT
	hack/demo.sh $(BIN) $(DEMO_OUT)

test: ## the README's test command: unit and integration tests, then the end-to-end suite where it can run (root on Linux; says why when skipped)
	$(GO) test ./...
	test/e2e/run.sh

unit: ## unit and integration tests only (fast; no root)
	$(GO) test ./...

test-race: ## concurrent packages under the race detector (needs cgo)
	CGO_ENABLED=1 $(GO) test -race ./trace/... ./collectors/...

FUZZ_PKGS := ./trace/iptables ./trace/nftables ./trace/ipset ./trace/ipvs ./trace/routes ./trace/conntrack ./trace/ruleset ./render ./collectors/nodedump

fuzz: ## run every fuzz target for FUZZTIME each (hack/fuzz.sh: a finding fails, Go's fuzztime-deadline race does not)
	GO=$(GO) FUZZTIME=$(FUZZTIME) hack/fuzz.sh $(FUZZ_PKGS)

bench: ## parser and simulator benchmarks on generated 10,000-Service dumps (iptables and nftables)
	$(GO) test -run '^$$' -bench . -benchmem ./trace/iptables ./trace/nftables

bench-ratio: ## whole-command time and peak RSS against grep -c on the same dump (iptables: five dump shapes, see TestBenchRatio; nftables: nftgen's mix, a LoadBalancer IP on every Service, 63-character names, every set on one line)
	$(GO) test -run '^TestBenchRatio(NFT)?$$' -v -count=1 ./test/bench -args -bench-ratio

bench-many-nodes: ## one trace offline through 40 nodes of 35 MB saved dumps (every core against GOMAXPROCS=1, alternating), then one through 200 nodes collected live through a fake executor (peak RSS under 1 GiB, wall time against collection + parse / cores)
	$(GO) test -run '^TestBenchManyNodes(Live)?$$' -v -count=1 -timeout 60m ./test/bench -args -bench-many-nodes -bench-many-nodes-live

fixtures: ## regenerate kube-proxy fixtures from real kube-proxy code (slow; needs root)
	hack/kpfixtures/gen.sh v1.29.6 v1.37.2 v1.22.17
	hack/kpfixtures/gen.sh --nftables v1.33.13 v1.37.2
	hack/kpfixtures/variants.sh
	hack/kpfixtures/ipvs.sh v1.29.6 v1.33.13 v1.37.2
	hack/ipset-testdata.sh

docs: ## regenerate the pictures in docs/images with the tool itself, from testdata
	hack/docs.sh

docs-check: ## fail if docs/images is not what the tool prints now
	hack/docs.sh --check

lint: ## gofmt, vet, tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	hack/verify-imports.sh
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	cd test/e2e && $(GO) vet ./... && $(GO) mod tidy && git diff --exit-code go.mod go.sum

ci: lint test test-race fuzz

.PHONY: release-check
release-check: ## goreleaser check + snapshot build of every platform, krew manifests validated (tools pinned in hack/tools, built once into ~/.cache)
	bash hack/release-check.sh

.PHONY: e2e
e2e: ## end-to-end only: real etcd, kube-apiserver, kube-proxy and kubelet+containerd nodes in network namespaces, three modes (root; fails rather than skips)
	test/e2e/run.sh --require

.PHONY: e2e-ipvs
IPVS_OUT ?= $(CURDIR)/bin/e2e-ipvs
e2e-ipvs: ## IPVS end to end only: real kube-proxy --proxy-mode=ipvs in a qemu VM (Debian's kernel) against the suite's control plane, real traffic, the node's dumps and traffic.json into IPVS_OUT (root)
	cd test/e2e && ./build.sh && GOFLAGS=-mod=mod $(GO) test -count=1 -v -timeout 30m -run '^TestIPVS$$' . -args -e2e -ipvs -ipvs-out=$(IPVS_OUT)
