// Package oom tells the host which containers the kernel's OOM killer hit.
//
// Each container's cgroup has a counter of OOM kills (cgroup v2:
// memory.events "oom_kill"). The watcher remembers, per container, the count
// it has already reported, and queues one event whenever the count rises.
// Two things look at the counters:
//
//   - inotify on memory.events, which the kernel touches on every memory
//     event: kills of processes that are not waited for (a container's
//     child) are reported as they happen;
//   - Check, which the container manager calls when it reaps a container
//     process and before it answers WaitProcess. The kernel raises the
//     counter before it sends the SIGKILL, so by the time the victim is
//     reaped the count is already up: the event is queued before the exit
//     is visible, whichever of the two looked first.
//
// Events are delivered in the order they were queued to Next, which the
// GetOOMEvent call blocks in.
package oom

import (
	"context"
	"sync"

	"github.com/containerd/log"
)

// maxQueued bounds the events kept while no one calls Next; the oldest are
// dropped beyond it.
const maxQueued = 1024

// Counter is one cgroup's OOM-kill count.
type Counter interface {
	// OOMKills reads the count.
	OOMKills() (uint64, error)
	// EventsFile changes whenever the count does, for inotify; "" if
	// there is no such file (cgroup v1): then only Check finds kills.
	EventsFile() string
}

// Watcher queues OOM events of the containers added to it.
type Watcher struct {
	ino *inotify // nil: no inotify, Check only

	mu      sync.Mutex
	watched map[string]*entry
	queue   []string
	// changed is closed, and replaced, whenever the queue grows.
	changed chan struct{}
}

type entry struct {
	counter  Counter
	wd       int // inotify watch, or -1
	reported uint64
}

// NewWatcher returns a watcher. Without inotify it still reports kills
// that Check finds, and says so in the log.
func NewWatcher() *Watcher {
	w := &Watcher{watched: make(map[string]*entry), changed: make(chan struct{})}
	ino, err := newInotify(w.checkWatch)
	if err != nil {
		log.L.WithError(err).Warn("OOM watch: no inotify; OOM kills are found only when a container process exits")
	} else {
		w.ino = ino
	}
	return w
}

// Close stops the inotify reader.
func (w *Watcher) Close() error {
	if w.ino == nil {
		return nil
	}
	return w.ino.close()
}

// Add starts watching container id's cgroup and returns its current count,
// which is not reported: only kills from now on are.
func (w *Watcher) Add(id string, c Counter) (uint64, error) {
	n, err := c.OOMKills()
	e := &entry{counter: c, wd: -1, reported: n}
	if file := c.EventsFile(); file != "" && w.ino != nil {
		wd, werr := w.ino.add(file, id)
		if werr != nil {
			log.L.WithError(werr).Warnf("OOM watch of container %s: only exits will find OOM kills", id)
		}
		e.wd = wd
	}
	w.mu.Lock()
	if old := w.watched[id]; old != nil && old.wd >= 0 {
		w.ino.remove(old.wd)
	}
	w.watched[id] = e
	w.mu.Unlock()
	return n, err
}

// Remove stops watching a container. Events already queued for it stay.
func (w *Watcher) Remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.watched[id]
	if e == nil {
		return
	}
	if e.wd >= 0 {
		w.ino.remove(e.wd)
	}
	delete(w.watched, id)
}

// Check reads container id's count and queues an event if it rose since the
// last report. It returns the count, and false if id is not watched or the
// counter cannot be read.
func (w *Watcher) Check(id string) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.watched[id]
	if e == nil {
		return 0, false
	}
	n, err := e.counter.OOMKills()
	if err != nil {
		log.L.WithError(err).Debugf("OOM count of container %s", id)
		return 0, false
	}
	if n > e.reported {
		e.reported = n
		w.push(id)
	}
	return n, true
}

// checkWatch is the inotify reader's callback for container id's file.
func (w *Watcher) checkWatch(id string, wd int) {
	w.mu.Lock()
	e := w.watched[id]
	current := e != nil && e.wd == wd
	w.mu.Unlock()
	if current {
		w.Check(id)
	}
}

// push queues an event; w.mu is held.
func (w *Watcher) push(id string) {
	if len(w.queue) >= maxQueued {
		log.L.Warnf("OOM events: queue full, dropping the event of container %s", w.queue[0])
		w.queue = w.queue[1:]
	}
	w.queue = append(w.queue, id)
	log.L.Infof("container %s: OOM kill", id)
	close(w.changed)
	w.changed = make(chan struct{})
}

// Next returns the oldest queued event's container, waiting for one while
// the queue is empty, until ctx ends. A queued event is returned even if
// ctx has already ended.
func (w *Watcher) Next(ctx context.Context) (string, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			id := w.queue[0]
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return id, nil
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
