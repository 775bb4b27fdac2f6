package hostbed

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTailLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("1\n2\n3\n4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n    int
		want string
	}{{2, "3\n4"}, {4, "1\n2\n3\n4"}, {10, "1\n2\n3\n4"}} {
		if got := TailLines(path, tc.n); got != tc.want {
			t.Errorf("TailLines(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := TailLines(filepath.Join(t.TempDir(), "missing"), 3); got == "" {
		t.Error("no error text for a missing log")
	}
}
