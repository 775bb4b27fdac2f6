package main

import (
	"os"
	"os/signal"
	"syscall"
)

// pause holds the pod's namespaces open. As PID 1 of a shared PID namespace
// it must reap orphans, and it must exit on SIGTERM: PID 1 gets no default
// signal actions, so an unhandled SIGTERM would be ignored.
func pause() error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return nil
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}
