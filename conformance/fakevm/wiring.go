package fakevm

import "fmt"

// HandlerName is the name of the fake VM's CRI runtime handler and of its
// RuntimeClass.
const HandlerName = "runc-fakevm"

// RuncEnv names the real runc for the wrapper; without it the wrapper runs
// the first runc on its PATH (containerd's).
const RuncEnv = "PODVM_FAKEVM_RUNC"

// HandlerTOML is the containerd CRI runtime entry of the fake VM: a runc
// handler whose binary is the wrapper. runtimes is the table the handlers
// live in, e.g. `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`
// in a version 3 config.
func HandlerTOML(runtimes, wrapper string) string {
	return fmt.Sprintf(`    [%[1]s.%[2]s]
      runtime_type = "io.containerd.runc.v2"
      [%[1]s.%[2]s.options]
        BinaryName = %[3]q
        SystemdCgroup = false
`, runtimes, HandlerName, wrapper)
}

// RuntimeClassManifest is the RuntimeClass that puts a pod on the fake VM.
func RuntimeClassManifest() string {
	return `apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: ` + HandlerName + `
handler: ` + HandlerName + `
`
}
