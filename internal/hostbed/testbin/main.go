// Command testbin is the one program inside podvm's locally built test
// images. Like busybox it is one binary under several names, and what it
// does depends on the name it runs as:
//
//	pause  the pod sandbox: sleeps until SIGTERM/SIGINT, reaping children
//	nginx  stands in for nginx: an HTTP server that looks like nginx to ps
//	httpd  stands in for Apache httpd: an HTTP server that logs "httpd"
//	nnp    prints its effective uid (installed setuid root, for no_new_privs)
//	probe  tries to connect to a socket: probe unix PATH | tcp HOST:PORT |
//	       vsock CID PORT; prints "connected" (exit 0) or "failed: <why>"
//	       (exit 2), for podvm's tests of what a pod VM can reach
//
// critest inspects these images only through those behaviours, so a few
// lines of Go replace images that no registry here can serve.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	// The executable's own name, not argv[0]: nginx rewrites argv[0] to
	// its process title, as the real one does.
	name := filepath.Base(os.Args[0])
	if exe, err := os.Executable(); err == nil {
		name = filepath.Base(exe)
	}
	var err error
	switch name {
	case "pause":
		err = pause()
	case "nginx":
		err = nginx(os.Args[1:])
	case "httpd":
		err = httpd(os.Args[1:])
	case "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case "probe":
		os.Exit(probe(os.Args[1:]))
	default:
		err = fmt.Errorf("unknown name %q (want pause, nginx, httpd, nnp or probe)", name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
