package childproc

import (
	"io"
	"os"
	"strings"
)

// tailBytes bounds how much of a log is read to find its last lines.
const tailBytes = 8 << 10

// TailLines returns the last n non-empty lines (other than the command line
// header) of the file at path joined by
// " | ", for putting into a one-line error. It returns "" when the file is
// missing or empty.
func TailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > tailBytes {
		if _, err := f.Seek(-tailBytes, io.SeekEnd); err != nil {
			return ""
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, tailBytes))
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		// Skip the "+ argv" header childproc writes: too long for an error.
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "+ ") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
