// Package fakevm is the fake-VM baseline of the conformance run: an OCI
// runtime wrapper, run by containerd as a runc handler's BinaryName, that
// dresses a runc container up as a VM the way a shared kernel can (LXCFS
// style files over /proc/meminfo, /proc/cpuinfo, /proc/stat and
// /proc/loadavg sized to the container's limits, a time namespace that
// starts /proc/uptime near zero, a PID namespace and a hostname of its own)
// and then runs the real runc. Every isolation spec must fail on it too: a
// spec it fools measures something a shared kernel can fake.
package fakevm

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// defaultMemory is the MemTotal shown to a container without a memory
	// limit: podvm's base guest size, as a VM without one would have.
	defaultMemory = 256 << 20

	// fakeUptime is about the uptime a new container sees: a guest just booted.
	fakeUptime = time.Second

	// sandboxIDAnnotation is where containerd's CRI puts the pod sandbox's
	// ID on every container of the pod.
	sandboxIDAnnotation = "io.kubernetes.cri.sandbox-id"
)

// Host is what the fake needs to know about the node at container
// creation: the clocks that the time namespace moves back to about zero,
// and whether the kernel has time namespaces at all.
type Host struct {
	Now            time.Time
	BootTime       time.Duration // CLOCK_BOOTTIME
	Monotonic      time.Duration // CLOCK_MONOTONIC
	TimeNamespaces bool
}

// procFiles are the /proc files the fake replaces; runc lets a bundle
// mount over these (the ones LXCFS emulates) and no others in /proc.
var procFiles = []string{"meminfo", "cpuinfo", "stat", "loadavg"}

// Edit dresses the container of spec up as a VM: it writes the fake /proc
// files into dir and adds their mounts, a PID namespace where the
// container has none, a time namespace and a hostname of its own where it
// has a UTS namespace of its own and no name. /proc/uptime is faked by the
// time namespace rather than a file, so it still ticks: specs time their
// work with it.
func Edit(spec *specs.Spec, dir string, h Host) error {
	if spec.Linux == nil {
		return fmt.Errorf("config.json has no linux section: not a Linux container")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fake VM files: %w", err)
	}
	files := Files(memoryOf(spec), cpusOf(spec), h.Now)
	for _, name := range procFiles {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(files[name]), 0o444); err != nil {
			return fmt.Errorf("fake /proc/%s: %w", name, err)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/proc/" + name, Type: "bind", Source: src, Options: []string{"bind", "ro"}})
	}
	if !hasNamespace(spec, specs.PIDNamespace) {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if h.TimeNamespaces && !hasNamespace(spec, specs.TimeNamespace) {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		spec.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{
			"boottime":  {Secs: -int64((h.BootTime - fakeUptime) / time.Second)},
			"monotonic": {Secs: -int64((h.Monotonic - fakeUptime) / time.Second)},
		}
	}
	if spec.Hostname == "" && ownsNamespace(spec, specs.UTSNamespace) {
		spec.Hostname = "fakevm-" + shortID(spec.Annotations[sandboxIDAnnotation])
	}
	return nil
}

// hasNamespace tells whether the container is in a namespace of type t,
// its own or one it joins.
func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}

// ownsNamespace tells whether the container gets a new namespace of type t
// (a pod's sandbox does; its containers join the sandbox's).
func ownsNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t && n.Path == "" })
}

func shortID(id string) string {
	if id == "" {
		return "guest"
	}
	return id[:min(len(id), 12)]
}

// memoryOf is the memory the fake shows: the limit, as LXCFS does, or a
// VM's base size without one.
func memoryOf(spec *specs.Spec) int64 {
	if r := spec.Linux.Resources; r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		return *r.Memory.Limit
	}
	return defaultMemory
}

// cpusOf is the CPU count the fake shows: the CFS quota rounded up, or one
// vCPU without one.
func cpusOf(spec *specs.Spec) int {
	r := spec.Linux.Resources
	if r == nil || r.CPU == nil || r.CPU.Quota == nil || *r.CPU.Quota <= 0 || r.CPU.Period == nil || *r.CPU.Period == 0 {
		return 1
	}
	q, p := *r.CPU.Quota, int64(*r.CPU.Period)
	return int((q + p - 1) / p)
}

// Files returns the contents of the fake /proc files for a VM of memory
// bytes and cpus CPUs booted at now: plausible values, fixed at creation.
func Files(memory int64, cpus int, now time.Time) map[string]string {
	kb := memory >> 10
	var cpuinfo, stat strings.Builder
	fmt.Fprintf(&stat, "cpu  %d 0 %d %d 0 0 0 0 0 0\n", 10*cpus, 5*cpus, 100*cpus)
	for i := range cpus {
		fmt.Fprintf(&cpuinfo, "processor\t: %d\nvendor_id\t: FakeVM\nmodel name\t: fakevm virtual CPU\ncpu MHz\t\t: 2000.000\ncpu cores\t: %d\nflags\t\t: fpu hypervisor\n\n", i, cpus)
		fmt.Fprintf(&stat, "cpu%d 10 0 5 100 0 0 0 0 0 0\n", i)
	}
	fmt.Fprintf(&stat, "intr 0\nctxt 0\nbtime %d\nprocesses 40\nprocs_running 1\nprocs_blocked 0\n", now.Unix())
	return map[string]string{
		"meminfo": fmt.Sprintf("MemTotal:       %8d kB\nMemFree:        %8d kB\nMemAvailable:   %8d kB\nBuffers:        %8d kB\nCached:         %8d kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:                 0 kB\n",
			kb, kb*9/10, kb*9/10, kb/50, kb/20),
		"cpuinfo": cpuinfo.String(),
		"stat":    stat.String(),
		// A freshly booted guest: its kernel threads and an init, not a node's hundreds of tasks.
		"loadavg": "0.00 0.00 0.00 1/40 40\n",
	}
}
