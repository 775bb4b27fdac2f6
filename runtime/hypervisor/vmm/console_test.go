package vmm

import (
	"os"
	"strings"
	"testing"
)

// A Machine's console: what the VMM writes reaches console.log, capped,
// and a death report's drain sees its last line.
func TestConsolePipe(t *testing.T) {
	m := New(Spec{Driver: "fake", ID: "c1", StateDir: t.TempDir(), ConsoleName: "console.log", ConsoleMaxBytes: 64})
	w, err := m.ConsolePipe()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := w.Write([]byte("line of the guest\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write([]byte("Kernel panic\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	m.drainConsole()
	cur, _ := os.ReadFile(m.Path("console.log"))
	old, _ := os.ReadFile(m.Path("console.log.1"))
	if !strings.HasSuffix(string(cur), "Kernel panic\n") || len(cur) > 64 || len(old) > 64 {
		t.Errorf("console.log = %q (and .1 %q): want at most 64 bytes each, ending with the panic", cur, old)
	}
}
