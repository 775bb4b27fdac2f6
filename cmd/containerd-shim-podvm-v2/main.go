// Command containerd-shim-podvm-v2 is the containerd shim (runtime type
// io.containerd.podvm.v2) that runs each pod in its own VM.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/podvm/podvm/runtime/shim/manager"
	"github.com/podvm/podvm/runtime/shim/task"
)

func main() {
	task.Register()
	shim.RunShim(context.Background(), manager.New("io.containerd.podvm.v2"), func(c *shim.Config) {
		// The shim's children (VMM, virtiofsd) are waited for by the code
		// that started them; a blanket reaper would steal their exit status
		// and hide a VMM's death.
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
