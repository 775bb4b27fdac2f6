#!/usr/bin/env bash
# Installs the Debian packages podvm's build and tests need. Idempotent: when
# every package is already installed it only checks and returns.
source "$(dirname "$0")/lib.sh"

packages=(
	# the VMM and what the guest image is made of
	qemu-system-x86 qemu-utils busybox-static cpio
	# crun, the guest's optional OCI runtime (hypervisor.guest_oci_runtime)
	crun
	# guest kernel build from Debian's source
	linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev xz-utils rsync
	# static runc for the guest and runc on the host
	libseccomp-dev pkg-config
	# the Rust virtiofsd (ci/install-tools.sh virtiofsd; also libseccomp-dev)
	libcap-ng-dev
	# protobuf generation (make generate)
	protobuf-compiler
	# pod networking for the CRI and cluster tests
	containernetworking-plugins iptables iproute2 socat
	# process inspection for leak checks
	procps psmisc
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	step "Debian packages: all ${#packages[@]} present"
	exit 0
fi
step "Debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
run_logged "$PODVM_CACHE/logs/apt-update.log" apt-get update
run_logged "$PODVM_CACHE/logs/apt-install.log" apt-get install -y --no-install-recommends "${missing[@]}"
