package probe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

func TestCollector(t *testing.T) {
	var c collector
	c.add(sample{connect: time.Millisecond, total: 3 * time.Millisecond}, nil)
	c.add(sample{connect: 2 * time.Millisecond, total: 1500 * time.Millisecond}, nil)
	c.add(sample{}, errors.New("timeout"))
	ph := c.phase(result.ProbeLoadBusy)
	if ph.Name != result.ProbeLoadBusy || ph.Response.N != 2 || ph.Response.Max != 1500 || ph.Connect.Median != 1.5 {
		t.Errorf("phase %+v", ph)
	}
	if ph.OverKubeletTimeout != 1 || len(ph.Failures) != 1 || len(ph.SamplesMs) != 2 {
		t.Errorf("over %d failures %v samples %v", ph.OverKubeletTimeout, ph.Failures, ph.SamplesMs)
	}
}

func TestSetRatios(t *testing.T) {
	sum := func(xs ...float64) stats.Summary { return stats.Summarize(xs) }
	phases := func(idle, busy stats.Summary) []result.ProbePhase {
		return []result.ProbePhase{{Name: result.ProbeIdle, Response: idle}, {Name: result.ProbeLoadBusy, Response: busy}}
	}
	for _, tc := range []struct {
		name               string
		runc, podvm        []result.ProbePhase
		wantIdle, wantBusy float64
	}{
		{"phase by phase", phases(sum(1, 1), sum(2, 2)), phases(sum(5, 5), sum(300, 300)), 5, 150},
		{"runc lacks a phase", phases(sum(1, 1), sum(2, 2))[:1], phases(sum(5, 5), sum(300, 300)), 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &result.Probe{Handlers: []result.HandlerProbe{{Handler: "runc", Phases: tc.runc}, {Handler: "podvm", Phases: tc.podvm}}}
			SetRatios(p)
			got := p.Handlers[1].Phases
			if got[0].MedianRatioToRunc != tc.wantIdle || got[1].MedianRatioToRunc != tc.wantBusy || got[1].P90RatioToRunc != tc.wantBusy {
				t.Errorf("ratios %+v", got)
			}
			if p.Handlers[0].Phases[0].MedianRatioToRunc != 1 {
				t.Errorf("runc's own ratio %v", p.Handlers[0].Phases[0].MedianRatioToRunc)
			}
		})
	}
}

func TestGetterPhase(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Close == false && r.Header.Get("Connection") != "close" {
			http.Error(w, "keep-alive asked", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	g := newGetter(srv.URL, nil)
	ctx := context.Background()
	if err := g.firstGet(ctx); err != nil {
		t.Fatal(err)
	}
	ph := g.phase(ctx, result.ProbeIdle, 3, time.Millisecond, nil)
	if ph.Response.N != 3 || len(ph.Failures) != 0 || ph.Connect.N != 3 {
		t.Errorf("idle phase %+v", ph)
	}
	// With until closed, one GET is made.
	done := make(chan struct{})
	close(done)
	if ph := g.phase(ctx, result.ProbeLoadBoot, 0, time.Millisecond, done); ph.Response.N != 1 {
		t.Errorf("load_boot phase %+v", ph)
	}
	bad := newGetter(srv.URL+"/x", nil)
	srv.Config.Handler = http.NotFoundHandler()
	if _, err := bad.get(ctx); err == nil {
		t.Error("a 404 is not an error")
	}
}

func TestChecksum(t *testing.T) {
	// An echo request with its checksum in place sums to zero.
	b := echo(8, 0x1234, 7)
	if checksum(b) != 0 {
		t.Errorf("checksum of a checksummed message: %#x", checksum(b))
	}
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to 0xddf2.
	if got := checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("checksum %#x", got)
	}
}

func TestPingLoopback(t *testing.T) {
	p, err := newPinger("127.0.0.1")
	if err != nil {
		t.Skipf("no raw ICMP socket here: %v", err)
	}
	defer p.Close()
	for i := 0; i < 2; i++ {
		if _, err := p.ping(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
