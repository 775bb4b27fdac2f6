// Package integration holds podvm's end-to-end tests: a private containerd
// running containers in pod VMs through the real shim, agent, guest kernel
// and QEMU. They need root and a podvm install (`make install-dev`).
//
// The host is set up with internal/hostbed; the test files here wrap it for
// testing.TB (env_test.go, containerd_env_test.go, cri_env_test.go): a
// failure fails the test and what is started is stopped by the test's
// cleanup. startContainerd gives a private containerd without CRI;
// startCRI a hostbed.Stack of the test registry, a pod network of its own
// and a containerd with CRI (runc and podvm handlers). Tests that need them
// call requireEnv (and requireCRI), which skips with the precise reason
// when the host lacks something, or fails instead when
// PODVM_REQUIRE_INTEGRATION=1 (set by `make test`, which installs
// everything, so a skip there would hide a bug).
package integration
