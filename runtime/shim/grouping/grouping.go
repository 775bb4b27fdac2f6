// Package grouping says which pod VM a container belongs to: the group
// the shim manager routes it by, and the rule the shim checks before a
// container joins a VM it did not boot. A CRI container may join only the
// VM of its own CRI sandbox, whatever its annotations say: the group of a
// CRI container is its sandbox id, and its cgroup parent and network
// namespace must be the sandbox's too.
package grouping

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/runtime/hostcgroup"
)

// Annotations containerd's CRI sets on every container it creates,
// overwriting any of the pod's own.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	// AnnotationGroup groups containers that are not CRI's (ctr, API
	// clients) into one VM; a CRI container's is ignored.
	AnnotationGroup = "io.containerd.podvm.v2.group"
)

// Container types of a CRI container.
const (
	TypeSandbox   = "sandbox"
	TypeContainer = "container"
)

// Of is the group of container id: a CRI container's sandbox id, or for
// any other container the podvm group annotation, else its own id.
func Of(id string, annotations map[string]string) (string, error) {
	if kind, ok := annotations[AnnotationContainerType]; ok {
		sb := annotations[AnnotationSandboxID]
		if sb == "" {
			return "", fmt.Errorf("container %s: CRI container type %q without a %s annotation", id, kind, AnnotationSandboxID)
		}
		return sb, nil
	}
	if g := annotations[AnnotationGroup]; g != "" {
		return g, nil
	}
	return id, nil
}

// VM is what identifies a booted pod VM, from the container that booted it.
type VM struct {
	// Group is the booting container's group (Of).
	Group string
	// CRI is set when a CRI sandbox container booted the VM.
	CRI bool
	// PodCgroup is the host cgroup parent of the sandbox's cgroup (the
	// kubelet's pod cgroup); "" when the sandbox named none.
	PodCgroup string
	// NetNS is the network namespace the VM's network came from; "" for
	// none (a host-network pod, or ctr run).
	NetNS string
	// ShimPid is the pid the shim reports for every task: CRI names the
	// sandbox's network namespace to its containers as /proc/<pid>/ns/net.
	ShimPid int
}

// NewVM describes the VM container id boots with spec.
func NewVM(id string, spec *specs.Spec, shimPid int) (VM, error) {
	group, err := Of(id, spec.Annotations)
	if err != nil {
		return VM{}, err
	}
	vm := VM{Group: group, NetNS: netNS(spec), ShimPid: shimPid}
	switch kind := spec.Annotations[AnnotationContainerType]; kind {
	case "":
		vm.NetNS = "" // a lone container's VM has no network
		return vm, nil
	case TypeSandbox:
		if group != id {
			return VM{}, fmt.Errorf("sandbox container %s names sandbox %s: a CRI sandbox's id is its own", id, group)
		}
	default:
		return VM{}, fmt.Errorf("container %s of CRI type %q cannot boot a pod VM: only its sandbox container can", id, kind)
	}
	vm.CRI = true
	vm.PodCgroup, err = podCgroup(spec)
	return vm, err
}

// CheckJoin refuses container id with spec to join vm unless it is one of
// vm's pod: the same group, of the same kind (CRI or not), and, for a CRI
// container, the sandbox's cgroup parent and network namespace. The error
// names the reason.
func (vm VM) CheckJoin(id string, spec *specs.Spec) error {
	group, err := Of(id, spec.Annotations)
	if err != nil {
		return err
	}
	if group != vm.Group {
		return fmt.Errorf("container %s belongs to group %s, not to this VM's %s", id, group, vm.Group)
	}
	kind, cri := spec.Annotations[AnnotationContainerType]
	if !vm.CRI {
		if cri {
			return fmt.Errorf("CRI container %s cannot join the VM of a non-CRI group %s", id, vm.Group)
		}
		return nil
	}
	if !cri {
		return fmt.Errorf("container %s is not a CRI container, and %s is a CRI pod's VM", id, vm.Group)
	}
	if kind != TypeContainer {
		return fmt.Errorf("container %s of CRI type %q cannot join sandbox %s: only type %q joins, and a sandbox has a VM of its own", id, kind, vm.Group, TypeContainer)
	}
	if cg, err := podCgroup(spec); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	} else if vm.PodCgroup != "" && cg != vm.PodCgroup {
		return fmt.Errorf("container %s is in pod cgroup %q, not sandbox %s's %q", id, cg, vm.Group, vm.PodCgroup)
	}
	if ns, shims := netNS(spec), fmt.Sprintf("/proc/%d/ns/net", vm.ShimPid); ns != vm.NetNS && ns != shims {
		return fmt.Errorf("container %s names network namespace %q, not sandbox %s's (%q or %q)", id, ns, vm.Group, vm.NetNS, shims)
	}
	return nil
}

// podCgroup is the host cgroup parent of the spec's cgroupsPath.
func podCgroup(spec *specs.Spec) (string, error) {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return "", nil
	}
	p, err := hostcgroup.ParsePath(spec.Linux.CgroupsPath)
	if err != nil {
		return "", err
	}
	return hostcgroup.Parent(p), nil
}

// netNS is the path of the spec's network namespace; "" when it has none.
func netNS(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}
