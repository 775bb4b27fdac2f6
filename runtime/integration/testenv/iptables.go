package testenv

import (
	"fmt"
	"os/exec"
	"strings"
)

// iptablesFamilies are the tools whose nat tables CNI's portmap edits.
var iptablesFamilies = []string{"iptables", "ip6tables"}

// iptablesChains names every chain of the nat tables ("iptables/CHAIN").
func iptablesChains() map[string]bool {
	out := map[string]bool{}
	for _, tool := range iptablesFamilies {
		rules, err := natRules(tool)
		if err != nil {
			continue // no such family on this host
		}
		for _, r := range rules {
			if len(r) == 2 && r[0] == "-N" {
				out[tool+"/"+r[1]] = true
			}
		}
	}
	return out
}

// natRules is `TOOL -t nat -S`, each line split into its arguments.
func natRules(tool string) ([][]string, error) {
	b, err := exec.Command(tool, "-w", "-t", "nat", "-S").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t nat -S: %w", tool, err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out = append(out, splitRule(line))
		}
	}
	return out, nil
}

// removeNewCNIChains deletes the CNI-* nat chains not in before, first
// dropping every rule that jumps to them, and returns their names.
func removeNewCNIChains(before map[string]bool) ([]string, error) {
	var removed []string
	var errs []string
	for _, tool := range iptablesFamilies {
		rules, err := natRules(tool)
		if err != nil {
			continue
		}
		isNew := map[string]bool{}
		for _, r := range rules {
			if len(r) == 2 && r[0] == "-N" && strings.HasPrefix(r[1], "CNI-") && !before[tool+"/"+r[1]] {
				isNew[r[1]] = true
			}
		}
		for _, r := range rules {
			if len(r) > 2 && r[0] == "-A" && !isNew[r[1]] && isNew[jumpTarget(r)] {
				del := append([]string{"-w", "-t", "nat", "-D"}, r[1:]...)
				if out, err := exec.Command(tool, del...).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Sprintf("%s %s: %v: %s", tool, strings.Join(del, " "), err, out))
				}
			}
		}
		// Flush all first: the new chains may jump to one another.
		for c := range isNew {
			exec.Command(tool, "-w", "-t", "nat", "-F", c).Run()
		}
		for c := range isNew {
			if out, err := exec.Command(tool, "-w", "-t", "nat", "-X", c).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Sprintf("%s -X %s: %v: %s", tool, c, err, out))
				continue
			}
			removed = append(removed, tool+"/"+c)
		}
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return removed, nil
}

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
