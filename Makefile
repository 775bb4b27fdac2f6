# podvm: VM-isolated pods for Kubernetes.
#
#   make test          install what is missing, build, run every test
#   make conformance   a local Kubernetes cluster, the isolation specs with runc,
#                      the fake VM and podvm, upstream RuntimeClass e2e, critest
#
# Heavy builds (containerd, runc, cri-tools, the guest kernel) are cached in
# $(PODVM_CACHE), keyed by version or content: a second run takes seconds.

SHELL := /bin/bash
export PODVM_CACHE ?= /var/cache/podvm
OUT := $(CURDIR)/_output
BIN := $(OUT)/bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/podvm/podvm/version.Version=$(VERSION) -X github.com/podvm/podvm/version.Revision=$(REVISION)
GO_TEST_FLAGS ?= -count=1
export PATH := $(PODVM_CACHE)/tools/containerd-v2.4.2/bin:$(PODVM_CACHE)/tools/runc-v1.5.2/bin:$(PODVM_CACHE)/tools/cri-tools-v1.37.0/bin:$(PATH)

.PHONY: all build deps image install-dev test test-hybrid-vsock unit-test integration-test critest critest-run lint generate spec-binary conformance conformance-specs bench fuzz soak clean help

all: build

help:
	@sed -n 's/^#  \{0,1\}//p' Makefile | sed -n '1,6p'

# Kubernetes, etcd and agnhost are for the local cluster (make conformance,
# and the cluster provider's own test in make test).
deps:
	@bash ci/install-packages.sh
	@bash ci/install-tools.sh containerd runc cri-tools kubernetes agnhost etcd virtiofsd

build:
	@mkdir -p $(BIN)
	go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/containerd-shim-podvm-v2 ./cmd/podvm
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(LDFLAGS) -X github.com/podvm/podvm/agent/server.Version=$(VERSION)" -o $(BIN)/podvm-agent ./cmd/podvm-agent

# The guest kernel and initramfs, from the cache when their inputs are unchanged.
image: build
	@bash ci/install-packages.sh
	@bash ci/install-tools.sh runc
	$(BIN)/podvm image build --agent $(BIN)/podvm-agent \
		--runc $(PODVM_CACHE)/tools/runc-v1.5.2/bin/runc-static --image-dir $(OUT)/share/podvm

# A complete install under _output, used by the integration tests.
install-dev: image
	$(BIN)/podvm install --prefix $(OUT) --image-dir $(OUT)/share/podvm --etc-dir $(OUT)/etc/podvm \
		--virtiofsd $(PODVM_CACHE)/tools/virtiofsd-1.14.0/bin/virtiofsd >/dev/null

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	go vet ./...
	cd spec && go vet ./...

unit-test:
	go test $(GO_TEST_FLAGS) ./...

# Integration tests need root, QEMU, containerd: PODVM_REQUIRE_INTEGRATION
# turns their "skipped: missing X" into a failure, since make installed X.
integration-test: install-dev
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 go test $(GO_TEST_FLAGS) -timeout 30m -v -run Integration ./... 2>&1 | tee $(OUT)/integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|\.go:[0-9]+:'; exit $${PIPESTATUS[0]}

# PODVM_TEST_KERNEL_BUILD=1 runs the kernel build and boot tests: after
# install-dev they are a cache hit plus one short boot.
# The spec module's own unit tests need no cluster (its suite skips, saying so).
# critest runs after them, alone: its podvm half is minutes of TCG guests, and
# sharing the two cores with the other integration packages would only make
# its timing-sensitive specs flaky. Its log is $(OUT)/critest.log. Last, the
# isolation and lift-and-shift specs through a local cluster on runc, the
# fake VM, podvm and podvm-template (template clones; conformance-specs,
# about 10 min here).
test: deps lint install-dev
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 PODVM_TEST_KERNEL_BUILD=1 go test $(GO_TEST_FLAGS) -timeout 40m ./... 2>&1 | tee $(OUT)/test.log; rc=$${PIPESTATUS[0]}; \
	(cd spec && go test $(GO_TEST_FLAGS) ./... 2>&1) | tee -a $(OUT)/test.log; [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME) 2>&1 | tee -a $(OUT)/test.log; [ $${PIPESTATUS[0]} -eq 0 ] || exit 1; \
	$(MAKE) --no-print-directory critest-run; crit=$$?; \
	$(MAKE) --no-print-directory conformance-specs; spec=$$?; \
	[ $$crit -eq 0 ] && [ $$spec -eq 0 ]

# Hybrid vsock (vhost-device-vsock) is opt-in while an intermittent hang is
# open (docs/design.md, "Agent channel"), so its QEMU tests are not part of
# make test; this runs them against the install.
test-hybrid-vsock: install-dev
	@bash ci/install-tools.sh vhost-device-vsock
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 PODVM_TEST_HYBRID_VSOCK=1 go test -count=1 -v -run 'Hybrid' ./runtime/hypervisor/qemu/

# critest (cri-tools v1.37.0) against one containerd with the runc and podvm
# handlers; see docs/critest.md for the known differences it checks against.
critest: deps install-dev
	@$(MAKE) --no-print-directory critest-run

critest-run:
	@echo "==> critest v1.37.0, runc then podvm handler (about 10 min; log $(OUT)/critest.log)"
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 PODVM_CRITEST=1 go test $(GO_TEST_FLAGS) -timeout 2h -v -run TestCritestIntegration ./runtime/integration/ 2>&1 | tee $(OUT)/critest.log | grep -E '^\s*(---|ok|FAIL|PASS)|critest_.*_test.go:[0-9]+:'; exit $${PIPESTATUS[0]}

# Fuzz targets: their seed corpora run in make test, then each target
# fuzzes for TEST_FUZZTIME; this runs each for FUZZTIME on demand.
FUZZ_TARGETS := ./runtime/guestspec:FuzzRewrite ./runtime/config:FuzzParse ./runtime/config:FuzzWithAnnotations \
	./runtime/sandbox:FuzzSizeFor ./runtime/agentclient:FuzzGuestReplies ./agent/server:FuzzAgentRequests ./agent/server:FuzzAgentFrames
FUZZTIME ?= 2m
# make test fuzzes each target briefly, after the seed corpora ran. A count,
# not a duration: Go 1.26's fuzz coordinator can fail a run that ends on its
# -fuzztime deadline with "context deadline exceeded" and no input at fault
# (golang/go#75804, fixed in Go 1.27).
TEST_FUZZTIME ?= 10000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do echo "== $${t#*:} ($${t%%:*}), $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) $${t%%:*}; done

# A longer soak than the 60 s one in make test: create/exec/delete cycles
# with SOAK_PODS pods at once, then the leak check.
SOAK_DURATION ?= 20m
SOAK_PODS ?= 3
soak: install-dev
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 PODVM_SOAK_DURATION=$(SOAK_DURATION) PODVM_SOAK_PODS=$(SOAK_PODS) \
		go test -count=1 -timeout 0 -v -run '^TestSoakIntegration$$' ./runtime/integration/ 2>&1 | tee $(OUT)/soak.log \
		| grep -E '^(=== RUN|--- |PASS|FAIL|ok)|soak_integration_test.go'; exit $${PIPESTATUS[0]}

generate:
	@bash ci/install-packages.sh
	GOBIN=$(PODVM_CACHE)/tools/protoc-plugins/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(PODVM_CACHE)/tools/protoc-plugins/bin go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
	PATH=$(PODVM_CACHE)/tools/protoc-plugins/bin:$$PATH go generate ./agent/api

# The spec suite is its own module (spec/go.mod: client-go, Ginkgo).
spec-binary:
	@mkdir -p $(BIN)
	cd spec && go test -c -o $(BIN)/podvm-spec.test .
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/podvm-testbin ./internal/hostbed/testbin

# A local single-node Kubernetes v1.37.2 (host processes) with podvm
# installed, the isolation specs with the baselines runc and runc-fakevm (the
# fake VM, docs/conformance.md) and with podvm, podvm-template and podvm-cache
# (pod VMs cloned from a template, booted ahead: docs/factory.md), the upstream RuntimeClass e2e
# specs and critest; report in _output/conformance.
CONFORMANCE_FLAGS ?=
conformance: deps install-dev spec-binary
	@bash ci/install-tools.sh kubernetes agnhost etcd ginkgo
	@$(BIN)/podvm install --prefix $(OUT)/cluster-podvm --image-dir $(OUT)/share/podvm --etc-dir $(OUT)/cluster-podvm/etc/podvm \
		--virtiofsd $(PODVM_CACHE)/tools/virtiofsd-1.14.0/bin/virtiofsd >/dev/null
	go build -trimpath -o $(BIN)/podvm-fakevm-runc ./conformance/fakevm/cmd/podvm-fakevm-runc
	PODVM_PREFIX=$(OUT) PODVM_REQUIRE_INTEGRATION=1 PODVM_CRITEST=1 $(BIN)/podvm conformance \
		--prefix $(OUT)/cluster-podvm --testbin $(BIN)/podvm-testbin --fakevm-runc $(BIN)/podvm-fakevm-runc \
		--out $(OUT)/conformance \
		--critest-command "go test -count=1 -timeout 2h -run TestCritestIntegration ./runtime/integration/" \
		$(CONFORMANCE_FLAGS)

# What make test runs of make conformance: the isolation and lift-and-shift
# specs on runc, the fake VM, podvm, podvm-template and podvm-cache through a local cluster, with the
# report's verdict rules (no critest, which make test runs on its own, and no
# upstream e2e). Its report is $(OUT)/conformance-specs/report.md.
conformance-specs:
	@$(MAKE) --no-print-directory conformance CONFORMANCE_FLAGS="--critest-command= --e2e-binary= --label-filter='isolation || lift-and-shift' --out=$(OUT)/conformance-specs $(CONFORMANCE_FLAGS)"

# Boot, pod startup and density, podvm beside runc (and runsc) in the same
# run: results.json, PNG plots and summary.md in _output/bench
# (docs/benchmarks.md). BENCH_FLAGS sizes it, e.g. "--pods 30".
BENCH_FLAGS ?=
bench: install-dev
	@bash ci/install-tools.sh containerd runc gvisor
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/podvm-testbin ./internal/hostbed/testbin
	PODVM_PREFIX=$(OUT) $(BIN)/podvm bench all --testbin $(BIN)/podvm-testbin --out $(OUT)/bench $(BENCH_FLAGS)

# The installer image of podvm deploy (docs/deploy.md): static binaries and
# the guest image, no base image. Written to _output/deploy/podvm-installer.tar
# (tagged podvm/installer:VERSION); DEPLOY_IMAGE=REF also pushes it there.
DEPLOY_IMAGE ?=
.PHONY: deploy-image
deploy-image: image
	@mkdir -p $(OUT)/deploy/bin
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(OUT)/deploy/bin/ ./cmd/containerd-shim-podvm-v2 ./cmd/podvm
	cp $(BIN)/podvm-agent $(OUT)/deploy/bin/
	$(OUT)/deploy/bin/podvm deploy image --bin-dir $(OUT)/deploy/bin --image-dir $(OUT)/share/podvm \
		--tar $(OUT)/deploy/podvm-installer.tar $(if $(DEPLOY_IMAGE),--push $(DEPLOY_IMAGE))

clean:
	rm -rf $(OUT)
