package container

import (
	"maps"
	"slices"
	"sync"
)

// Table holds the shim's containers by id. It is the one place that says
// whether a container id, from containerd or from the guest, is one of this
// shim's.
type Table struct {
	mu sync.Mutex
	m  map[string]*Container
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{m: map[string]*Container{}} }

// Get returns the container named id.
func (t *Table) Get(id string) (*Container, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.m[id]
	return c, ok
}

// Has reports whether id names one of the table's containers.
func (t *Table) Has(id string) bool {
	_, ok := t.Get(id)
	return ok
}

// Add puts c in the table under its id.
func (t *Table) Add(c *Container) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[c.ID] = c
}

// Remove takes the container named id out of the table.
func (t *Table) Remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, id)
}

// All lists the table's containers, in no order.
func (t *Table) All() []*Container {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Collect(maps.Values(t.m))
}

// Len is the number of containers in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
