// Package version holds podvm's version, set at build time with
// -ldflags "-X github.com/podvm/podvm/version.Version=...".
package version

import "runtime"

var (
	// Version is the release or `git describe` of the build.
	Version = "dev"
	// Revision is the git commit of the build.
	Revision = "unknown"
)

// Go is the Go release the binary was built with.
func Go() string { return runtime.Version() }
