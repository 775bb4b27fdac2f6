package childproc

import (
	"os/exec"
	"runtime"
	"sync"
)

// Pdeathsig is delivered when the *thread* that forked the child exits, not
// the process. Go normally keeps its threads, but a goroutine that exits while
// locked to its thread (the usual way to throw away a thread after setns into
// a pod's network namespace) takes that thread down, and any child forked from
// it would be killed with it. So every fork happens on one thread that is
// locked and never exits: the children then die exactly when the shim does.

var (
	spawnOnce sync.Once
	spawnReqs chan func()
)

func startOnSpawnThread(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for f := range spawnReqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- func() { errc <- cmd.Start() }
	return <-errc
}
