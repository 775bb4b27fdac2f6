// Package testbed is the host-side test bed shared by the integration
// tests (runtime/integration/testenv), the benchmarks (bench/hostenv) and
// the local Kubernetes cluster (conformance/cluster/local): a private
// containerd with CRI (its configuration and its process), a CNI bridge
// network (its configuration, its bridge, and the iptables chains its
// plugins leave), host cgroup parents, and the listing of what podvm may
// leave on a host (processes, mounts, taps, sockets, cgroups).
//
// Everything here returns plain errors and takes no testing.TB: the
// benchmarks and the cluster are production code. Each caller chooses its
// own names (bridge, subnet, socket, file names), so that a test, a
// benchmark and a cluster can run side by side.
package testbed
