// Package estimate is the one place for how long podvm's long steps take,
// as measured (each value names its measurement), and for the progress
// lines that report them, so that every command and doc says the same.
package estimate

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Step is a long step and how long it took when measured.
type Step struct {
	Name string
	// Typical is the measured duration; Where is the machine and the
	// source of the figure.
	Typical time.Duration
	Where   string
}

// The long steps.
var (
	// KernelBuild is extract, configure and `make -j2 vmlinux` from a
	// fresh tree: 3 min 39 s and 4 min 12 s in two runs
	// (docs/guest-image.md, "Figures").
	KernelBuild = Step{"guest kernel build", 4 * time.Minute, "2 cores, fresh tree"}
	// Critest is critest with the runc and podvm handlers under TCG
	// (docs/critest.md).
	Critest = Step{"critest", 10 * time.Minute, "TCG, runc and podvm handlers"}
)

// About is the step's estimate as progress lines print it.
func (s Step) About() string {
	return fmt.Sprintf("about %s on %s", round(s.Typical), s.Where)
}

func round(d time.Duration) string {
	if d >= time.Minute {
		return fmt.Sprintf("%g min", float64(d.Round(30*time.Second))/float64(time.Minute))
	}
	return d.Round(time.Second).String()
}

// First and Every are when Ticker prints: the first line soon, so that a
// waiting operator sees the step is alive, then seldom.
const (
	First = 2 * time.Second
	Every = 15 * time.Second
)

// Ticker prints "<prefix>... <elapsed> of <estimate>" to w after First and
// then every Every, until the returned stop is called; stop waits for a
// line being printed, so that w need not be safe for concurrent use.
func Ticker(w io.Writer, prefix string, s Step) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(First)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s... %s (%s)\n", prefix, time.Since(start).Round(time.Second), s.About())
				t.Reset(Every)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}
