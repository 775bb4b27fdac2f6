package nodesuite

import "github.com/podvm/podvm/conformance/report"

// Known are the node conformance specs whose outcome on a class is known
// to differ from runc's, each with why. A difference not listed here is
// shown as unexplained and fails the run. The runc entries were measured
// with this harness on the local cluster, the podvm entries are what is left
// of the five failures of issue 18's run by hand: the three in-place resize
// specs pass since the OCI runtime's setup runs under a CPU floor
// (docs/design.md "Small CPU limits"; docs/conformance.md has the runs).
var Known = []report.KnownDifference{
	// The baseline's own failures: limits of the local cluster's stand-in
	// images, not of a runtime. Every class fails them alike.
	{Class: "runc", Spec: "[sig-node] ConfigMap should be consumable as environment variable names with various prefixes [Conformance]", Reason: envNames},
	{Class: "runc", Spec: "[sig-node] ConfigMap should be consumable via the environment [Conformance] [NodeConformance]", Reason: envNames},
	{Class: "runc", Spec: "[sig-node] Secrets should be consumable as environment variable names variable names with various prefixes [Conformance]", Reason: envNames},
	{Class: "runc", Spec: "[sig-node] Secrets should be consumable via the environment [Conformance] [NodeConformance]", Reason: envNames},
	{Class: "podvm", Spec: "[sig-node] Probing container should *not* be restarted with a GRPC liveness probe [Conformance] [NodeConformance]",
		Reason: "issue 18: probes through the pod network into a TCG guest time out while other pod VMs boot on the 2 cores; passes with fewer VMs at once"},
	{Class: "podvm", Spec: "[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart http hook properly [Conformance] [NodeConformance]",
		Reason: "issue 18: the hook's HTTP request into a TCG guest did not arrive in time while other pod VMs booted on the 2 cores"},
}

const envNames = "local cluster: the busybox stand-in is Debian's busybox-static 1.35, whose sh drops environment variables that are not shell names (data-1) before `sh -c env` prints them; the upstream busybox:1.37.0-2 image keeps them"
