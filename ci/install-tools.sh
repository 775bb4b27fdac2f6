#!/usr/bin/env bash
# Builds the pinned host tools podvm is tested with and caches each under
# $PODVM_CACHE/tools/<name>-<version>/bin. A tool whose cache directory holds a
# complete build is not rebuilt. Prints the bin directories to put on PATH.
#
# Usage: ci/install-tools.sh [containerd|runc|cri-tools]...   (default: all)
source "$(dirname "$0")/lib.sh"

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.2
CRI_TOOLS_VERSION=v1.37.0

tools_dir="$PODVM_CACHE/tools"

# cached NAME VERSION FILE...: true when every FILE exists in the cache dir.
cached() {
	local dir="$tools_dir/$1-$2/bin"; shift 2
	for f in "$@"; do [ -x "$dir/$f" ] || return 1; done
}

install_containerd() {
	local dir="$tools_dir/containerd-$CONTAINERD_VERSION"
	if cached containerd "$CONTAINERD_VERSION" containerd ctr containerd-shim-runc-v2; then
		step "containerd $CONTAINERD_VERSION: cached"; return
	fi
	step "containerd $CONTAINERD_VERSION: building (about 4 min cold)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	GOBIN="$dir.tmp/bin" run_logged "$PODVM_CACHE/logs/containerd.log" \
		go install "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

install_runc() {
	local dir="$tools_dir/runc-$RUNC_VERSION"
	if cached runc "$RUNC_VERSION" runc runc-static; then
		step "runc $RUNC_VERSION: cached"; return
	fi
	step "runc $RUNC_VERSION: building dynamic (host) and static (guest) binaries"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	GOBIN="$dir.tmp/bin" CGO_ENABLED=1 run_logged "$PODVM_CACHE/logs/runc.log" \
		go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
	# The guest has no libc: the static build links libseccomp.a in.
	local static="$dir.tmp/static"
	mkdir -p "$static"
	GOBIN="$static" CGO_ENABLED=1 run_logged "$PODVM_CACHE/logs/runc-static.log" \
		go install -tags "seccomp netgo osusergo" -trimpath \
		-ldflags "-s -w -extldflags -static" "github.com/opencontainers/runc@$RUNC_VERSION"
	mv "$static/runc" "$dir.tmp/bin/runc-static"; rmdir "$static"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

install_cri_tools() {
	local dir="$tools_dir/cri-tools-$CRI_TOOLS_VERSION"
	if cached cri-tools "$CRI_TOOLS_VERSION" crictl critest; then
		step "cri-tools $CRI_TOOLS_VERSION: cached"; return
	fi
	step "cri-tools $CRI_TOOLS_VERSION: building crictl and critest"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	GOBIN="$dir.tmp/bin" run_logged "$PODVM_CACHE/logs/crictl.log" \
		go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
	# critest is a test binary only: build it inside the downloaded module.
	local src
	src=$(cd "$dir.tmp" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -d "$src" ] || die "cri-tools source for $CRI_TOOLS_VERSION not found in the module cache"
	(cd "$src" && run_logged "$PODVM_CACHE/logs/critest.log" go test -c -o "$dir.tmp/bin/critest" ./cmd/critest)
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(containerd runc cri-tools)
for t in "${want[@]}"; do
	case $t in
	containerd) install_containerd ;;
	runc) install_runc ;;
	cri-tools) install_cri_tools ;;
	*) die "unknown tool $t (known: containerd runc cri-tools)" ;;
	esac
done
