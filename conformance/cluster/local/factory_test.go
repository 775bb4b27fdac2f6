package local

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/config"
)

// The daemon's copy of config-cache.toml differs from it only in the
// pool's size, so that its VMs' key is the one the class's shims ask for.
func TestDaemonCacheConfig(t *testing.T) {
	prefix := t.TempDir()
	share := filepath.Join(prefix, "share", "podvm")
	os.MkdirAll(share, 0o755)
	shipped := string(config.DefaultTOML())
	cacheTOML := strings.Replace(strings.Replace(shipped, "\nmode = \"none\"\n", "\nmode = \"cache\"\n", 1), "\ncache_size = 2\n", "\ncache_size = 4\n", 1)
	if err := os.WriteFile(filepath.Join(share, "config-cache.toml"), []byte(cacheTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Dir, o.PodvmPrefix = t.TempDir(), prefix
	for _, tc := range []struct {
		pool int
		size int
		own  bool
	}{{pool: DefaultCachePool, size: DefaultCachePool, own: true}, {pool: 0, size: 0, own: true}, {pool: -1, size: 4}} {
		o.CachePool = tc.pool
		p := New(o)
		path, err := p.daemonCacheConfig()
		if err != nil {
			t.Fatal(err)
		}
		if own := path != o.podvmCacheConfig(); own != tc.own {
			t.Errorf("pool %d: daemon config %s", tc.pool, path)
		}
		b, _ := os.ReadFile(path)
		if want := strings.Replace(cacheTOML, "\ncache_size = 4\n", "\ncache_size = "+strconv.Itoa(tc.size)+"\n", 1); string(b) != want {
			t.Errorf("pool %d: the daemon's config differs from config-cache.toml beyond cache_size", tc.pool)
		}
		if size, err := p.poolSize(); err != nil || size != tc.size {
			t.Errorf("pool %d: poolSize %d, %v; want %d", tc.pool, size, err, tc.size)
		}
	}
	if _, err := withCacheSize("[factory]\nmode = \"cache\"\n", 3); err == nil || !strings.Contains(err.Error(), "0 lines") {
		t.Errorf("a config without a cache_size line: %v", err)
	}
}
