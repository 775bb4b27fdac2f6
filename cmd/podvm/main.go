// Command podvm is the operator's tool for the podvm runtime: it checks what
// a host can do, builds the guest image, and installs the runtime.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
