package container

import (
	"fmt"

	runc "github.com/containerd/go-runc"
)

// Stdio says which standard streams the host relays for a process. A
// stream not asked for is /dev/null in the process; with Terminal the
// process gets a pty instead of pipes.
type Stdio struct {
	Stdin, Stdout, Stderr, Terminal bool
}

// spawn runs a runc command that leaves a process behind (create, or exec
// --detach) with the streams st asks for, and returns the agent's ends of
// them and the process's pid from pidFile. run gets the process's side of
// the streams and, with a terminal, the socket runc sends the pty master to
// (nil otherwise: a typed nil would reach runc as a socket path).
func spawn(st Stdio, pidFile string, run func(io runc.IO, console runc.ConsoleSocket) error) (_ *stdio, pid int, retErr error) {
	var s *stdio
	if st.Terminal {
		socket, err := runc.NewTempConsoleSocket()
		if err != nil {
			return nil, 0, fmt.Errorf("console socket: %w", err)
		}
		defer socket.Close()
		p, err := newProcIO()
		if err != nil {
			return nil, 0, err
		}
		defer p.Close()
		if err := run(p, socket); err != nil {
			return nil, 0, err
		}
		master, err := socket.ReceiveMaster()
		if err != nil {
			return nil, 0, fmt.Errorf("receive terminal: %w", err)
		}
		if s, err = newTerminalStdio(master, st.Stdin); err != nil {
			return nil, 0, fmt.Errorf("terminal: %w", err)
		}
	} else {
		var (
			p   *procIO
			err error
		)
		if s, p, err = newStdio(st.Stdin, st.Stdout, st.Stderr); err != nil {
			return nil, 0, fmt.Errorf("stdio: %w", err)
		}
		defer p.Close()
		if err := run(p, nil); err != nil {
			s.close()
			return nil, 0, err
		}
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		s.close()
		return nil, 0, fmt.Errorf("pid of the new process: %w", err)
	}
	return s, pid, nil
}
