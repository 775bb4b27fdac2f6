package safety

import (
	"strings"
	"testing"
)

func TestCheckSeparateKernel(t *testing.T) {
	node := Kernel{
		BootID:      "ba71b219-d1e5-4c51-a979-91f77c3cd98f",
		ProcVersion: "Linux version 6.18.44-fc-v657 (root@build) #1 SMP",
	}
	guest := Kernel{
		BootID:      "2b7dbbbf-6a8f-41d1-b090-1b944f086797\n",
		ProcVersion: "Linux version 6.1.192-podvm (podvm@podvm) #1 SMP\n",
	}
	for _, tc := range []struct {
		name    string
		pod     Kernel
		node    Kernel
		allowed bool
	}{
		{"separate guest kernel", guest, node, true},
		{"runc: same kernel", Kernel{node.BootID + "\n", node.ProcVersion + "\n"}, node, false},
		{"same boot id, other version string", Kernel{node.BootID, guest.ProcVersion}, node, false},
		{"boot id differs only in case", Kernel{strings.ToUpper(node.BootID), guest.ProcVersion}, node, false},
		{"same version, other boot id", Kernel{guest.BootID, node.ProcVersion}, node, false},
		{"pod boot id unreadable", Kernel{"", guest.ProcVersion}, node, false},
		{"pod version unreadable", Kernel{guest.BootID, "  \n"}, node, false},
		{"node boot id unknown", guest, Kernel{"", node.ProcVersion}, false},
		{"node version unknown", guest, Kernel{node.BootID, ""}, false},
		{"nothing known", Kernel{}, Kernel{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSeparateKernel(tc.pod, tc.node)
			if tc.allowed {
				if err != nil {
					t.Fatalf("refused a separate kernel: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed a kernel that is (or may be) the node's")
			}
			if !strings.HasPrefix(err.Error(), Refusal) {
				t.Fatalf("error %q does not start with %q", err, Refusal)
			}
		})
	}
}
