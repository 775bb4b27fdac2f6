package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int64
		want string
	}{{4, "6789"}, {10, "0123456789"}, {100, "0123456789"}, {0, ""}}
	for _, tt := range tests {
		got, err := readTail(path, tt.n)
		if err != nil || got != tt.want {
			t.Errorf("readTail(%d) = %q, %v; want %q", tt.n, got, err, tt.want)
		}
	}
	if _, err := readTail(filepath.Join(t.TempDir(), "missing"), 4); err == nil {
		t.Error("readTail of a missing file: no error")
	}
}
