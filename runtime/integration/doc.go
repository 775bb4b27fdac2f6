// Package integration holds podvm's end-to-end tests: a private containerd
// running containers in pod VMs through the real shim, agent, guest kernel
// and QEMU. They need root and a podvm install (`make install-dev`); see
// testenv.Require for how a missing prerequisite is reported.
package integration
