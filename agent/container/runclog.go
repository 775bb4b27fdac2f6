package container

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

// runcError adds runc's own last error message to err. runc writes its
// errors to the --log file, not to its stderr, because its stderr is the
// container's.
func runcError(err error, logPath string) error {
	if msg := lastRuncError(logPath); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// lastRuncError returns the message of the last error-level line of runc's
// JSON log, or "" if there is none.
func lastRuncError(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && (line.Level == "error" || line.Level == "fatal") {
			last = line.Msg
		}
	}
	return last
}
