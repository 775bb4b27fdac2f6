package container

import (
	runc "github.com/containerd/go-runc"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// killedStatus is the status of a process ended by SIGKILL, which is how
// the OOM killer ends its victims.
const killedStatus = 128 + int(unix.SIGKILL)

// watchExits hands each reaped exit to the process it belongs to.
func (m *Manager) watchExits(exits <-chan runc.Exit) {
	for e := range exits {
		m.mu.Lock()
		p, ok := m.byPid[e.Pid]
		if ok {
			delete(m.byPid, e.Pid)
		} else if m.spawns > 0 {
			m.early[e.Pid] = e
		}
		m.mu.Unlock()
		if ok {
			m.finish(p, e)
		}
	}
}

// spawned ends a runc call counted in m.spawns. p is the process it
// started (nil if it failed): from now on its exit is p's, and if it has
// already come, p finishes now.
func (m *Manager) spawned(p *Process) {
	m.mu.Lock()
	m.spawns--
	var (
		early runc.Exit
		died  bool
	)
	if p != nil {
		if early, died = m.early[p.pid]; !died {
			m.byPid[p.pid] = p
		}
	}
	if m.spawns == 0 {
		clear(m.early)
	}
	m.mu.Unlock()
	if died {
		m.finish(p, early)
	}
}

// finish records a process's exit, in this order:
//
//  1. the container's OOM-kill count is read, and an OOM event queued if
//     it rose: the kernel counts the kill before it sends the SIGKILL, so
//     the count is up by the time the victim is reaped;
//  2. the exit is published to WaitProcess, with oom_killed if the process
//     died of SIGKILL while the count rose during its life;
//  3. when it is the init, every process left in the container's cgroup is
//     killed, so that exec processes (and, in a shared pid namespace, the
//     init's orphans) end and their waiters return, as the kernel does by
//     itself for a private pid namespace.
func (m *Manager) finish(p *Process, e runc.Exit) {
	oomKilled := false
	if n, ok := m.oom.Check(p.c.id); ok && e.Status == killedStatus && n > p.oomBase {
		oomKilled = true
	}
	p.setExited(e, oomKilled)
	if p.execID == "" {
		p.c.killRest()
	}
}

// killRest kills what is left of a container whose init exited.
func (c *Container) killRest() {
	if c.cgroup.Known() {
		if err := c.cgroup.Kill(); err != nil {
			log.L.WithError(err).Warnf("container %s: kill processes left after its init", c.id)
		}
		return
	}
	for _, p := range c.execList() {
		if !p.exited() {
			_ = unix.Kill(p.pid, unix.SIGKILL)
		}
	}
}
