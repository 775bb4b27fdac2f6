#!/usr/bin/env bash
# Builds the pinned host tools podvm is tested with and caches each under
# $PODVM_CACHE/tools/<name>-<version>/bin. A tool whose cache directory holds a
# complete build is not rebuilt. Prints the bin directories to put on PATH.
#
# Usage: ci/install-tools.sh [containerd|runc|cri-tools|kubernetes|agnhost|etcd|ginkgo|gvisor|virtiofsd|vhost-device-vsock]...
# (default: containerd runc cri-tools; kubernetes, agnhost, etcd and ginkgo are for
# make conformance, gvisor for make bench; virtiofsd (make deps; install-dev
# ships it) and vhost-device-vsock (make test-hybrid-vsock) are Rust crates,
# see docs/vsock-virtiofsd.md)
source "$(dirname "$0")/lib.sh"

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.2
CRI_TOOLS_VERSION=v1.37.0
KUBERNETES_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
# The Ginkgo CLI runs e2e.test's specs in parallel processes; it must be the
# version k8s.io/kubernetes $KUBERNETES_VERSION requires (its go.mod), the one
# compiled into e2e.test.
GINKGO_VERSION=v2.32.0
# gVisor tags no Go module version: a pseudo-version of gvisor.dev/gvisor that
# builds with the go command (bench/hostenv looks for the same one).
GVISOR_VERSION=v0.0.0-20260905035102-160fafc42237
# Crates from the Rust registry, built with the locked dependencies they publish.
VIRTIOFSD_VERSION=1.14.0
VHOST_DEVICE_VSOCK_VERSION=0.3.0

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
	step "containerd $CONTAINERD_VERSION: building (about 2 min cold)"
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

# Kubernetes is not meant to be a dependency: its go.mod points every staging
# module (k8s.io/api, ...) at ./staging. kubernetes_module DIR makes DIR a
# throwaway module that requires it and replaces each staging module with its
# published v0.X.Y twin.
kubernetes_module() {
	local mod=$1 staging=${KUBERNETES_VERSION/v1./v0.}
	mkdir -p "$mod"
	(cd "$mod" && rm -f go.mod go.sum && go mod init podvm.local/kubernetes-build >/dev/null 2>&1)
	local src
	src=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -f "$src/go.mod" ] || die "k8s.io/kubernetes@$KUBERNETES_VERSION not found in the module cache"
	{
		echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
		echo "replace ("
		sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$src/go.mod"
		echo ")"
	} >>"$mod/go.mod"
	(cd "$mod" && GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/kubernetes-mod.log" go get "k8s.io/kubernetes@$KUBERNETES_VERSION")
}

# kubernetes_ldflags stamps the version, as the release build does: the
# apiserver, kubelet and e2e suite compare versions.
kubernetes_ldflags() {
	local pkg=k8s.io/component-base/version
	echo "-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
}

install_kubernetes() {
	local dir="$tools_dir/kubernetes-$KUBERNETES_VERSION"
	local bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl e2e.test)
	if cached kubernetes "$KUBERNETES_VERSION" "${bins[@]}"; then
		step "kubernetes $KUBERNETES_VERSION: cached"; return
	fi
	step "kubernetes $KUBERNETES_VERSION: building ${bins[*]} (about 8 min cold on 2 cores)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	kubernetes_module "$dir.tmp/mod"
	local ldflags; ldflags=$(kubernetes_ldflags)
	(cd "$dir.tmp/mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/kubernetes.log" \
		go build -trimpath -ldflags "$ldflags" -o "$dir.tmp/bin/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl)
	# The upstream e2e suite (RuntimeClass conformance, [Feature:RuntimeHandler]).
	(cd "$dir.tmp/mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/kubernetes-e2e.log" \
		go test -c -trimpath -ldflags "$ldflags" -o "$dir.tmp/bin/e2e.test" k8s.io/kubernetes/test/e2e)
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

# agnhost is the utility image of the upstream e2e suite (its node-exec pods
# run it); the local cluster's registry serves it on a busybox base.
install_agnhost() {
	local dir="$tools_dir/agnhost-$KUBERNETES_VERSION"
	if cached agnhost "$KUBERNETES_VERSION" agnhost; then
		step "agnhost ($KUBERNETES_VERSION): cached"; return
	fi
	step "agnhost ($KUBERNETES_VERSION): building"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	kubernetes_module "$dir.tmp/mod"
	(cd "$dir.tmp/mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/agnhost.log" \
		go build -trimpath -ldflags "-s -w" -o "$dir.tmp/bin/agnhost" k8s.io/kubernetes/test/images/agnhost)
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

install_etcd() {
	local dir="$tools_dir/etcd-$ETCD_VERSION"
	if cached etcd "$ETCD_VERSION" etcd; then
		step "etcd $ETCD_VERSION: cached"; return
	fi
	step "etcd $ETCD_VERSION: building (about 1 min cold)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin" "$dir.tmp/mod"
	(cd "$dir.tmp/mod" && go mod init podvm.local/etcd-build >/dev/null 2>&1 &&
		GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1) ||
		die "cannot fetch go.etcd.io/etcd/server/v3@$ETCD_VERSION from the Go module proxy"
	(cd "$dir.tmp/mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/etcd.log" \
		go build -trimpath -ldflags "-s -w" -o "$dir.tmp/bin/etcd" go.etcd.io/etcd/server/v3)
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

install_ginkgo() {
	local dir="$tools_dir/ginkgo-$GINKGO_VERSION"
	if cached ginkgo "$GINKGO_VERSION" ginkgo; then
		step "ginkgo $GINKGO_VERSION: cached"; return
	fi
	step "ginkgo $GINKGO_VERSION: building the CLI (about 10 s)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	GOBIN="$dir.tmp/bin" GOFLAGS=-mod=mod run_logged "$PODVM_CACHE/logs/ginkgo.log" \
		go install "github.com/onsi/ginkgo/v2/ginkgo@$GINKGO_VERSION"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

# gVisor's runsc, for the benchmarks (make bench runs it beside runc and
# podvm as the OCI runtime of containerd's runc shim). CGO_ENABLED=0: a cgo
# runsc cannot start inside its own chroot, which has no dynamic loader.
install_gvisor() {
	local dir="$tools_dir/gvisor-$GVISOR_VERSION"
	if cached gvisor "$GVISOR_VERSION" runsc; then
		step "gVisor runsc $GVISOR_VERSION: cached"; return
	fi
	step "gVisor runsc $GVISOR_VERSION: building (about a minute cold on 2 cores)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
	GOBIN="$dir.tmp/bin" CGO_ENABLED=0 run_logged "$PODVM_CACHE/logs/gvisor.log" \
		go install "gvisor.dev/gvisor/runsc@$GVISOR_VERSION"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

# cargo_command prints the cargo to use: the one on PATH, else rustup's default
# place (a CI shell may not have sourced ~/.cargo/env).
cargo_command() {
	command -v cargo 2>/dev/null && return
	[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ] && { echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo"; return; }
	die "cargo not found on PATH nor in ${CARGO_HOME:-$HOME/.cargo}/bin: install a Rust toolchain (rustup)"
}

# install_crate NAME VERSION MINUTES: cargo install of crate NAME, whose binary
# is also NAME, into the cache. MINUTES is the cold build time measured here
# (2 cores). The registry index and crate sources go to CARGO_HOME as usual;
# CARGO_BUILD_JOBS limits the build's parallelism on a busy machine.
install_crate() {
	local name=$1 version=$2 minutes=$3 dir="$tools_dir/$1-$2" cargo
	if cached "$name" "$version" "$name"; then
		step "$name $version: cached"; return
	fi
	cargo=$(cargo_command)
	step "$name $version: building with cargo (about $minutes min cold on 2 cores)"
	rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
	run_logged "$PODVM_CACHE/logs/$name.log" \
		"$cargo" install --locked --version "=$version" --root "$dir.tmp" "$name"
	rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(containerd runc cri-tools)
for t in "${want[@]}"; do
	case $t in
	containerd) install_containerd ;;
	runc) install_runc ;;
	cri-tools) install_cri_tools ;;
	kubernetes) install_kubernetes ;;
	agnhost) install_agnhost ;;
	etcd) install_etcd ;;
	ginkgo) install_ginkgo ;;
	gvisor) install_gvisor ;;
	# The Rust virtio-fs daemon (needs libcap-ng-dev and libseccomp-dev).
	virtiofsd) install_crate virtiofsd "$VIRTIOFSD_VERSION" 3 ;;
	# A vhost-user vsock device whose host end is a unix socket (hybrid vsock).
	vhost-device-vsock) install_crate vhost-device-vsock "$VHOST_DEVICE_VSOCK_VERSION" 2 ;;
	*) die "unknown tool $t (known: containerd runc cri-tools kubernetes agnhost etcd ginkgo gvisor virtiofsd vhost-device-vsock)" ;;
	esac
done
