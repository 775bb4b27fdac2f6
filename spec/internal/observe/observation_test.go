package observe

import (
	"strings"
	"testing"
)

func TestReplacerLongestFirst(t *testing.T) {
	r := NewReplacer(map[string]string{
		"<deployment>": "liftshift-podvm",
		"<pod-name>":   "liftshift-podvm-6d9f7c-abcde",
		"<pod-ip>":     "10.200.0.7",
		"<unused>":     "",
	})
	got := r.Replace("10.200.0.7\tliftshift-podvm-6d9f7c-abcde # liftshift-podvm")
	want := "<pod-ip>\t<pod-name> # <deployment>"
	if got != want {
		t.Fatalf("Replace = %q; want %q", got, want)
	}
	if r.Replace("") != "" {
		t.Fatal("an empty value must not match everywhere")
	}
}

func TestNormalize(t *testing.T) {
	o := Observation{"hosts": "10.0.0.1 pod-a  \r\nfe00::1 ip6  \n\n", "env": "X=1"}
	n := o.Normalize(NewReplacer(map[string]string{"<ip>": "10.0.0.1", "<pod>": "pod-a"}))
	if n["hosts"] != "<ip> <pod>\nfe00::1 ip6" || n["env"] != "X=1" {
		t.Fatalf("Normalize = %#v", n)
	}
	if o["env"] != "X=1" || !strings.HasPrefix(o["hosts"], "10.0.0.1") {
		t.Fatal("Normalize changed its receiver")
	}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      Observation
		wantDiffs []string // substrings, one per expected entry, in order
	}{
		{"identical", Observation{"x": "1", "y": "2"}, Observation{"y": "2", "x": "1"}, nil},
		{"value differs", Observation{"x": "1"}, Observation{"x": "2"}, []string{`x:`}},
		{"missing on each side", Observation{"a": "1", "x": "1"}, Observation{"b": "1", "x": "1"}, []string{"a: only in runc", "b: only in podvm"}},
		{"empty versus absent", Observation{"x": ""}, Observation{}, []string{"x: only in runc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Diff("runc", tc.a, "podvm", tc.b)
			if len(d) != len(tc.wantDiffs) {
				t.Fatalf("Diff = %q; want %d entries", d, len(tc.wantDiffs))
			}
			for i, w := range tc.wantDiffs {
				if !strings.Contains(d[i], w) {
					t.Errorf("entry %d = %q; want it to contain %q", i, d[i], w)
				}
			}
		})
	}
}

func TestString(t *testing.T) {
	got := Observation{"b": "2", "a": "x\ny"}.String()
	if got != "a = \"x\\ny\"\nb = \"2\"\n" {
		t.Fatalf("String = %q", got)
	}
}
