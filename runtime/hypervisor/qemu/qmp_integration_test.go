package qemu

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// A real QEMU takes the driver back on its monitor after the driver's
// connection broke: the command on the broken connection fails, the next
// one dials QEMU's -qmp socket (server=on,wait=off) again and is answered.
func TestQEMUQMPReconnectIntegration(t *testing.T) {
	needRootAndQEMU(t)
	cfg := testConfig(t, testKernel(t), buildInitramfs(t, contract.SharedFS9p), contract.SharedFS9p)
	v := startVM(t, cfg).(*VM)
	current := func() *qmpConn {
		v.qmp.connMu.Lock()
		defer v.qmp.connMu.Unlock()
		return v.qmp.cur
	}
	old := current()
	// Our side of the stream ends, as after a cut write; QEMU sees the hang-up.
	must(t, old.conn.(*net.UnixConn).CloseWrite())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := v.QueryStatus(ctx); err == nil {
		t.Fatalf("QueryStatus on the broken connection: %q, no error", st)
	}
	start := time.Now()
	st, err := v.QueryStatus(ctx)
	if err != nil || st != "running" {
		t.Fatalf("QueryStatus after the failure: %q, %v", st, err)
	}
	t.Logf("re-dial and query-status: %v", time.Since(start).Round(time.Millisecond))
	if c := current(); c == nil || c == old {
		t.Errorf("the client kept its broken connection")
	}
}
