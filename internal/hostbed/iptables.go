package hostbed

import (
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// Chains are the iptables chains a test bed's plugins add and never remove
// (CNI's portmap adds CNI-HOSTPORT-*, the kubelet KUBE-*): those named with
// one of Prefixes in the given tables of the given tools. A chain is named
// "tool/table/CHAIN".
type Chains struct {
	Tools    []string // iptables, ip6tables
	Tables   []string // nat, filter, mangle
	Prefixes []string // CNI-, KUBE-
}

// Snapshot names every chain of c's tables, ours or not, for RemoveNew.
// A tool or table the host lacks is passed over.
func (c Chains) Snapshot() map[string]bool {
	out := map[string]bool{}
	for _, tool := range c.Tools {
		for _, table := range c.Tables {
			rules, err := iptablesRules(tool, table)
			if err != nil {
				continue
			}
			for _, r := range rules {
				if len(r) == 2 && r[0] == "-N" {
					out[tool+"/"+table+"/"+r[1]] = true
				}
			}
		}
	}
	return out
}

// RemoveNew deletes the chains with one of c's prefixes that are not in
// before (a Snapshot), first deleting every other chain's rule that jumps
// to them, and returns what it removed.
func (c Chains) RemoveNew(before map[string]bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, tool := range c.Tools {
		for _, table := range c.Tables {
			rules, err := iptablesRules(tool, table)
			if err != nil {
				continue
			}
			isNew := map[string]bool{}
			for _, r := range rules {
				if len(r) == 2 && r[0] == "-N" && c.ours(r[1]) && !before[tool+"/"+table+"/"+r[1]] {
					isNew[r[1]] = true
				}
			}
			if len(isNew) == 0 {
				continue
			}
			for _, r := range rules {
				if len(r) > 2 && r[0] == "-A" && !isNew[r[1]] && isNew[jumpTarget(r)] {
					args := append([]string{"-w", "-t", table, "-D"}, r[1:]...)
					if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, out))
					}
				}
			}
			names := make([]string, 0, len(isNew))
			for name := range isNew {
				names = append(names, name)
			}
			sort.Strings(names)
			// Flush all first: the new chains may jump to one another.
			for _, name := range names {
				exec.Command(tool, "-w", "-t", table, "-F", name).Run()
			}
			for _, name := range names {
				if out, err := exec.Command(tool, "-w", "-t", table, "-X", name).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s -X %s: %v: %s", tool, table, name, err, out))
					continue
				}
				removed = append(removed, tool+"/"+table+"/"+name)
			}
		}
	}
	return removed, errors.Join(errs...)
}

func (c Chains) ours(chain string) bool {
	for _, p := range c.Prefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// iptablesRules is `TOOL -t TABLE -S`, each line split into its arguments.
func iptablesRules(tool, table string) ([][]string, error) {
	b, err := exec.Command(tool, "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w", tool, table, err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out = append(out, splitRule(line))
		}
	}
	return out, nil
}

// jumpTarget is the chain a rule jumps (-j) or goes (-g) to.
func jumpTarget(rule []string) string {
	for i := 0; i+1 < len(rule); i++ {
		if rule[i] == "-j" || rule[i] == "-g" {
			return rule[i+1]
		}
	}
	return ""
}

// splitRule splits a line of `iptables -S` into arguments; comments come
// in double quotes.
func splitRule(line string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case ch == '\\' && inQuote && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case ch == '"':
			inQuote, have = !inQuote, true
		case ch == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
