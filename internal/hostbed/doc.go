// Package hostbed sets a host up for podvm's integration tests
// (runtime/integration), its benchmarks (bench/benchhost) and its
// local Kubernetes cluster (conformance/cluster/local): a private
// containerd with CRI (its configuration and its process), a CNI bridge
// network (its configuration, its bridge, and the iptables chains its
// plugins leave), an image registry on 127.0.0.1 with locally built images,
// host cgroup parents, and the listing of what podvm may leave on a host
// (processes, mounts, taps, sockets, cgroups). A Stack starts registry,
// bridge and containerd together and stops them together.
//
// Everything here returns plain errors and takes no testing.TB: the
// benchmarks and the cluster are production code. Each caller chooses its
// own names (bridge, subnet, socket, file names), so that a test, a
// benchmark and a cluster can run side by side.
package hostbed
