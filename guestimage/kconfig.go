package guestimage

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// kconfigOption is one assignment from a fragment or a .config.
// Value is "n" for both "=n" and "# CONFIG_X is not set".
type kconfigOption struct {
	Name  string // with the CONFIG_ prefix
	Value string // y, n, a number, or a quoted string exactly as written
	Line  int
}

var (
	kconfigSet   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	kconfigUnset = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// parseKconfig reads fragment or .config text. Other comments and blank lines
// are skipped; any other line is an error, and so is an option assigned twice
// (merge_config.sh would silently keep the last one).
func parseKconfig(text []byte) ([]kconfigOption, error) {
	var opts []kconfigOption
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var o kconfigOption
		if m := kconfigSet.FindStringSubmatch(line); m != nil {
			o = kconfigOption{Name: m[1], Value: m[2], Line: n}
		} else if m := kconfigUnset.FindStringSubmatch(line); m != nil {
			o = kconfigOption{Name: m[1], Value: "n", Line: n}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else {
			return nil, fmt.Errorf("line %d: not a Kconfig assignment: %q", n, line)
		}
		if o.Value == "" {
			return nil, fmt.Errorf("line %d: %s has no value", n, o.Name)
		}
		if prev, dup := seen[o.Name]; dup {
			return nil, fmt.Errorf("line %d: %s is already set on line %d", n, o.Name, prev)
		}
		seen[o.Name] = n
		opts = append(opts, o)
	}
	return opts, sc.Err()
}

// configMismatch is a fragment option that the final .config does not honour.
type configMismatch struct {
	Want    kconfigOption
	Got     string   // value in .config; "" when the symbol is absent entirely
	Defined bool     // a Kconfig entry defines the symbol (when DepsKnown)
	Deps    []string // that entry's "depends on" lines
}

// verifyConfig compares the fragment with the final .config and returns the
// options Kconfig changed: a wanted value (y, a number, a string) that did
// not survive, or an =n that something selected back on.
func verifyConfig(fragment, final []kconfigOption) []configMismatch {
	got := make(map[string]string, len(final))
	for _, o := range final {
		got[o.Name] = o.Value
	}
	var bad []configMismatch
	for _, want := range fragment {
		g, ok := got[want.Name]
		if want.Value == "n" {
			if ok && g != "n" { // an absent symbol is off too
				bad = append(bad, configMismatch{Want: want, Got: g})
			}
			continue
		}
		if g != want.Value {
			bad = append(bad, configMismatch{Want: want, Got: g})
		}
	}
	return bad
}

// configError lists the fragment options that `make olddefconfig` changed.
type configError struct {
	Fragment   string // the fragment's name, for the message
	Config     string // path of the final .config, when there is one
	Mismatches []configMismatch
	DepsKnown  bool // Defined and Deps were filled in from the Kconfig files
}

func (e *configError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel config: Kconfig changed %d option(s) of %s; fix the fragment:", len(e.Mismatches), e.Fragment)
	for _, m := range e.Mismatches {
		w := m.Want
		fmt.Fprintf(&b, "\n  %s=%s (line %d): ", w.Name, w.Value, w.Line)
		switch {
		case w.Value == "n":
			fmt.Fprintf(&b, "is %s: an enabled option selects it; drop this line or the option that selects it", m.Got)
			continue
		case m.Got == "":
			b.WriteString("absent from .config")
		case m.Got == "n":
			b.WriteString("is not set")
		default:
			fmt.Fprintf(&b, "is %s", m.Got)
		}
		switch {
		case e.DepsKnown && !m.Defined:
			b.WriteString("; no Kconfig entry defines it in this kernel (a typo, or an option this version does not have)")
		case len(m.Deps) > 0:
			fmt.Fprintf(&b, "; probably a missing dependency: %s", strings.Join(m.Deps, "; "))
		default:
			fmt.Fprintf(&b, "; probably a missing dependency (a block in a parent Kconfig file, or a choice); look it up with make menuconfig, /%s", strings.TrimPrefix(w.Name, "CONFIG_"))
		}
	}
	if e.Config != "" {
		fmt.Fprintf(&b, "\n(final configuration: %s)", e.Config)
	}
	return b.String()
}

// explain fills in Defined and Deps of every mismatch from the Kconfig files
// under the kernel source tree src.
func (e *configError) explain(src string) error {
	var names []string
	for _, m := range e.Mismatches {
		names = append(names, m.Want.Name)
	}
	deps, err := kconfigDeps(src, names)
	if err != nil {
		return err
	}
	for i := range e.Mismatches {
		d, ok := deps[e.Mismatches[i].Want.Name]
		e.Mismatches[i].Defined, e.Mismatches[i].Deps = ok, d
	}
	e.DepsKnown = true
	return nil
}

// kconfigDeps finds the "config NAME" entries for names under the kernel
// source tree src and returns their "depends on" lines keyed by name. A name
// defined in several Kconfig files gets the lines of all of them. Names with
// no entry are absent from the result.
func kconfigDeps(src string, names []string) (map[string][]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[strings.TrimPrefix(n, "CONFIG_")] = true
	}
	deps := map[string][]string{}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "Documentation" || n == "tools" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(d.Name(), "Kconfig") {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanKconfigDeps(text, want, deps)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan Kconfig files: %w", err)
	}
	for n := range deps {
		sort.Strings(deps[n])
	}
	out := map[string][]string{}
	for n, d := range deps {
		out["CONFIG_"+n] = d
	}
	return out, nil
}

// scanKconfigDeps adds to deps the dependencies of every entry in one
// Kconfig file whose symbol is in want: its own "depends on" lines and the
// conditions of the if, menu and choice blocks around it in this file. An
// entry with no dependency still gets a (possibly empty) slice, so callers
// can tell "defined" from "unknown".
func scanKconfigDeps(text []byte, want map[string]bool, deps map[string][]string) {
	type block struct{ conds []string }
	var (
		stack      []*block
		cur        string // wanted symbol whose attributes are being read
		open       *block // menu or choice whose attributes are being read
		openKind   string
		helpIndent = -1 // indentation of the current "help" keyword, -1 outside help text
	)
	add := func(sym, d string) {
		if !slices.Contains(deps[sym], d) {
			deps[sym] = append(deps[sym], d)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ind := indentWidth(line)
		if helpIndent >= 0 {
			if ind > helpIndent {
				continue // help text, however it reads
			}
			helpIndent = -1
		}
		rest := strings.Join(f[1:], " ")
		switch f[0] {
		case "help", "---help---":
			helpIndent = ind
		case "config", "menuconfig":
			cur, open = "", nil
			if len(f) > 1 && want[f[1]] {
				cur = f[1]
				if deps[cur] == nil {
					deps[cur] = []string{}
				}
				for _, b := range stack {
					for _, c := range b.conds {
						add(cur, c)
					}
				}
			}
		case "menu", "choice":
			cur = ""
			open, openKind = &block{}, f[0]
			stack = append(stack, open)
		case "if":
			cur, open = "", nil
			stack = append(stack, &block{conds: []string{"inside `if " + rest + "`"}})
		case "endif", "endmenu", "endchoice":
			cur, open = "", nil
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case "comment", "source", "mainmenu":
			cur, open = "", nil
		case "depends":
			if len(f) < 3 || f[1] != "on" {
				continue
			}
			switch {
			case cur != "":
				add(cur, "depends on "+strings.Join(f[2:], " "))
			case open != nil:
				open.conds = append(open.conds, openKind+" depends on "+strings.Join(f[2:], " "))
			}
		}
	}
}

// indentWidth is the width of line's leading blanks, tabs counting to the
// next multiple of 8 as Kconfig does.
func indentWidth(line string) int {
	w := 0
	for _, r := range line {
		switch r {
		case ' ':
			w++
		case '\t':
			w = (w/8 + 1) * 8
		default:
			return w
		}
	}
	return w
}
