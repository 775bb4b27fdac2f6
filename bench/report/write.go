// Package report turns benchmark results into what people read: PNG plots
// (gonum.org/v1/plot), a Markdown summary with the published anchors
// beside our figures, and the targets checked against the figures.
package report

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/podvm/podvm/bench/result"
)

// Write writes results.json, the plots and summary.md into dir.
func Write(dir string, r *result.Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := result.Write(filepath.Join(dir, "results.json"), r); err != nil {
		return err
	}
	if _, err := Plots(dir, r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(Summary(r)), 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}
