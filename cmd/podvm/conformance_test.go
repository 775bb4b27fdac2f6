package main

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/podvm/podvm/conformance/report"
)

// A run whose baseline is not among its classes is refused before any
// cluster is touched (the provider here would fail if it were reached).
func TestConformanceRefusesAMissingBaseline(t *testing.T) {
	for _, tt := range []struct{ classes, baseline string }{
		{"podvm", "runc"},
		{"runc,podvm", ""},
		{"runc,podvm", "runc,runc-fakevm"},
	} {
		o := &conformanceOptions{providerName: "no-such-provider", classes: tt.classes, baseline: tt.baseline}
		if err := o.run(context.Background(), io.Discard); !errors.Is(err, report.ErrUsage) {
			t.Errorf("--runtime-classes %q --baseline %q: %v, want a usage error", tt.classes, tt.baseline, err)
		}
	}
}
