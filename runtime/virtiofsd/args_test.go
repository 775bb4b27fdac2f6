package virtiofsd

import (
	"reflect"
	"testing"
)

func TestArgs(t *testing.T) {
	tests := []struct {
		name   string
		flavor Flavor
		cfg    Config
		want   []string
	}{
		{"C default cache", FlavorC, Config{SharedDir: "/s"},
			[]string{"--fd=3", "-o", "source=/s", "-o", "cache=auto", "-o", "sandbox=chroot", "-o", "announce_submounts"}},
		{"C never means none, extra args", FlavorC, Config{SharedDir: "/s", Cache: "never", ExtraArgs: []string{"-o", "xattr"}},
			[]string{"--fd=3", "-o", "source=/s", "-o", "cache=none", "-o", "sandbox=chroot", "-o", "announce_submounts", "-o", "xattr"}},
		{"Rust none means never", FlavorRust, Config{SharedDir: "/s", Cache: "none"},
			[]string{"--fd=3", "--shared-dir=/s", "--cache=never", "--sandbox=chroot", "--announce-submounts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Args(tt.flavor, tt.cfg, 3)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Args =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestArgsErrors(t *testing.T) {
	if _, err := Args(FlavorC, Config{SharedDir: "/s", Cache: "sometimes"}, 3); err == nil {
		t.Error("bad cache mode accepted")
	}
	if _, err := Args(FlavorC, Config{}, 3); err == nil {
		t.Error("empty shared dir accepted")
	}
}
