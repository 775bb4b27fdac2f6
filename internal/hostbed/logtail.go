package hostbed

import (
	"os"
	"strings"
)

// TailLines returns the last n lines of a log file, for error messages of
// the tests, the benchmarks and the local cluster alike.
func TailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
