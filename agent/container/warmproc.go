package container

import (
	"os"
	"time"
)

// warmProgram is argv[0] of the warm-up container's processes, and where
// the agent's own binary is bound in its root: the guest has no other
// static program a container could run (crun is dynamic, runc may be
// absent from the container's view), and the agent's code is the VM's
// already.
const warmProgram = "/podvm-warm"

// warmExitArg has the warm-up's exec process exit 0 at once.
const warmExitArg = "exit"

// warmLife bounds how long a warm-up container's init lives if nobody
// kills it: the warm-up kills it within seconds, and an init left by an
// agent that lost track of it must not stay for the pod to see.
const warmLife = time.Minute

// WarmInvoked reports whether this process is a warm-up container's
// program (WarmRuntime), which the agent's main hands to WarmMain.
func WarmInvoked() bool { return len(os.Args) > 0 && os.Args[0] == warmProgram }

// WarmMain is the warm-up container's program. As its init (no argument)
// it waits to be killed; as its exec (warmExitArg) it exits 0 at once.
// Either way it runs the Go runtime's start under the container's seccomp
// filter, so a filter that would kill a pod's program kills it too.
func WarmMain() {
	if len(os.Args) > 1 && os.Args[1] == warmExitArg {
		os.Exit(0)
	}
	time.Sleep(warmLife)
	os.Exit(0)
}
