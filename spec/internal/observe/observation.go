// Package observe records what an application sees and does under one runtime class as a flat
// set of named values, with the values that legitimately differ between two runs (pod name, IP,
// UID, node) replaced by placeholders, so that two runs can be compared for equality.
package observe

import (
	"fmt"
	"sort"
	"strings"
)

// Observation maps a fact's name ("env/LITERAL", "exec/app/id") to what was observed.
type Observation map[string]string

// Replacer swaps run-specific strings for placeholders. Longer strings are replaced first, so
// a pod name is replaced before the deployment name it starts with.
type Replacer struct {
	pairs []pair
}

type pair struct{ from, to string }

// NewReplacer builds a Replacer from placeholder -> value; empty values are ignored.
func NewReplacer(placeholders map[string]string) *Replacer {
	r := &Replacer{}
	for to, from := range placeholders {
		if from != "" {
			r.pairs = append(r.pairs, pair{from, to})
		}
	}
	sort.Slice(r.pairs, func(i, j int) bool {
		if len(r.pairs[i].from) != len(r.pairs[j].from) {
			return len(r.pairs[i].from) > len(r.pairs[j].from)
		}
		return r.pairs[i].from < r.pairs[j].from
	})
	return r
}

// Replace applies every replacement to s.
func (r *Replacer) Replace(s string) string {
	for _, p := range r.pairs {
		s = strings.ReplaceAll(s, p.from, p.to)
	}
	return s
}

// Normalize returns a copy of o with every value passed through r and trailing white space
// trimmed from each line.
func (o Observation) Normalize(r *Replacer) Observation {
	n := Observation{}
	for k, v := range o {
		lines := strings.Split(r.Replace(v), "\n")
		for i := range lines {
			lines[i] = strings.TrimRight(lines[i], " \t\r")
		}
		n[k] = strings.TrimRight(strings.Join(lines, "\n"), "\n")
	}
	return n
}

// Diff lists every fact that differs between two observations, one entry per fact, in key
// order; nil means they are identical.
func Diff(wantName string, want Observation, gotName string, got Observation) []string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var diffs []string
	for _, k := range sorted {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !gok:
			diffs = append(diffs, fmt.Sprintf("%s: only in %s: %q", k, wantName, w))
		case !wok:
			diffs = append(diffs, fmt.Sprintf("%s: only in %s: %q", k, gotName, g))
		case w != g:
			diffs = append(diffs, fmt.Sprintf("%s:\n    %s: %q\n    %s: %q", k, wantName, w, gotName, g))
		}
	}
	return diffs
}

// String prints the observation one fact per line, in key order.
func (o Observation) String() string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %q\n", k, o[k])
	}
	return b.String()
}
