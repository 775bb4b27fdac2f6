package kmsg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	old := Path
	defer func() { Path = old }()
	Path = filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(Path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 2000)
	if _, err := (Writer{}).Write([]byte("first\nsecond\n" + long + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(Path)
	if err != nil {
		t.Fatal(err)
	}
	want := "<3>podvm-agent: first\n<3>podvm-agent: second\n<3>podvm-agent: " + long[:MaxLine] + "...\n"
	if string(got) != want {
		t.Errorf("records:\n%q\nwant\n%q", got, want)
	}
}
