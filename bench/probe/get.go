package probe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"time"

	"github.com/podvm/podvm/bench/result"
	"github.com/podvm/podvm/bench/stats"
)

// getter makes the GETs of one pod's probes, each after a ping when
// it has a pinger.
type getter struct {
	url    string
	client *http.Client
	pinger *pinger
}

func newGetter(url string, p *pinger) *getter {
	// A new connection for every GET, as the kubelet's prober makes.
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &getter{url: url, client: &http.Client{Transport: tr, Timeout: getTimeout}, pinger: p}
}

// sample is one ping and GET: the ping's round trip, the GET's TCP
// handshake and the whole GET.
type sample struct{ ping, connect, total time.Duration }

// probe pings (if it can), then GETs.
func (g *getter) probe(ctx context.Context) (sample, error) {
	var rtt time.Duration
	if g.pinger != nil {
		var err error
		if rtt, err = g.pinger.ping(getTimeout); err != nil {
			return sample{}, err
		}
	}
	s, err := g.get(ctx)
	s.ping = rtt
	return s, err
}

func (g *getter) get(ctx context.Context) (sample, error) {
	var s sample
	var connStart time.Time
	trace := &httptrace.ClientTrace{
		ConnectStart: func(string, string) { connStart = time.Now() },
		ConnectDone:  func(string, string, error) { s.connect = time.Since(connStart) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, g.url, nil)
	if err != nil {
		return s, err
	}
	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("GET %s: %w", g.url, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s.total = time.Since(start)
	if err != nil {
		return s, fmt.Errorf("GET %s: body: %w", g.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %s", g.url, resp.Status)
	}
	return s, nil
}

// firstGet retries a GET until one succeeds or ctx ends.
func (g *getter) firstGet(ctx context.Context) error {
	for {
		_, err := g.get(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// phase makes n GETs, interval apart, or with until set as many as fit
// before it is closed (at least one).
func (g *getter) phase(ctx context.Context, name string, n int, interval time.Duration, until <-chan struct{}) result.ProbePhase {
	var c collector
	for i := 0; ctx.Err() == nil; i++ {
		if until == nil && i >= n {
			break
		}
		s, err := g.probe(ctx)
		c.add(s, err)
		if until != nil && closed(until) {
			break
		}
		time.Sleep(interval)
	}
	return c.phase(name)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// collector gathers one phase's GETs.
type collector struct {
	ping, connect, total []float64
	over                 int
	failures             []string
}

func (c *collector) add(s sample, err error) {
	if err != nil {
		c.failures = append(c.failures, err.Error())
		return
	}
	if s.ping > 0 {
		c.ping = append(c.ping, result.Ms(s.ping))
	}
	c.connect = append(c.connect, result.Ms(s.connect))
	c.total = append(c.total, result.Ms(s.total))
	if s.total > kubeletTimeout {
		c.over++
	}
}

func (c *collector) phase(name string) result.ProbePhase {
	return result.ProbePhase{Name: name, Ping: stats.Summarize(c.ping), Connect: stats.Summarize(c.connect), Response: stats.Summarize(c.total),
		OverKubeletTimeout: c.over, SamplesMs: c.total, Failures: c.failures}
}
