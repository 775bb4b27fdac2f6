package qemu

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
)

// handoverAgent answers Handover and GuestDetails; every other call panics
// (nil interface): the test makes none.
type handoverAgent struct {
	api.AgentServiceService
	entropy []byte
}

func (a *handoverAgent) Handover(ctx context.Context, req *api.HandoverRequest) (*api.Empty, error) {
	a.entropy = req.Entropy
	return &api.Empty{}, nil
}

func (a *handoverAgent) GuestDetails(ctx context.Context, req *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	return &api.GuestDetailsResponse{BootId: "b"}, nil
}

// TestHandoverSessionContinues shows the hand-over's session carrying a
// fresh ttrpc client's calls: without the stream shift the server refuses
// the client's first call (stream 1, re-used).
func TestHandoverSessionContinues(t *testing.T) {
	for _, shift := range []bool{true, false} {
		sock := filepath.Join(t.TempDir(), "s")
		l, err := net.Listen("unix", sock)
		must(t, err)
		srv, err := ttrpc.NewServer()
		must(t, err)
		agent := &handoverAgent{}
		api.RegisterAgentServiceService(srv, agent)
		go srv.Serve(context.Background(), l)
		t.Cleanup(func() { srv.Close() })

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := net.Dial("unix", sock)
		must(t, err)
		entropy := bytes.Repeat([]byte{7}, handoverEntropy)
		if err := rawHandover(ctx, conn, entropy); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(agent.entropy, entropy) {
			t.Fatalf("agent got entropy %x", agent.entropy)
		}
		var c net.Conn = conn
		if shift {
			c = &streamShift{Conn: conn, delta: handoverStreams}
		}
		client := api.NewAgentServiceClient(ttrpc.NewClient(c))
		for i := range 3 {
			_, err := client.GuestDetails(ctx, &api.GuestDetailsRequest{})
			if shift && err != nil {
				t.Fatalf("call %d after the hand-over: %v", i, err)
			}
			if !shift {
				if err == nil {
					t.Fatal("without the shift, the first call after the hand-over succeeded: the test proves nothing")
				}
				break
			}
		}
	}
}

// TestFrameCursorSplitHeaders feeds frames a byte at a time: a header is
// passed on only whole and shifted, payloads untouched.
func TestFrameCursorSplitHeaders(t *testing.T) {
	frame := func(id uint32, body string) []byte {
		h := []byte{0, 0, 0, byte(len(body)), 0, 0, 0, byte(id), ttrpcRequest, 0}
		return append(h, body...)
	}
	in := append(frame(1, "abc"), frame(3, "")...)
	in = append(in, frame(5, "xy")...)
	want := append(frame(3, "abc"), frame(5, "")...)
	want = append(want, frame(7, "xy")...)
	var f frameCursor
	var out []byte
	for i := range in {
		got := f.feed(in[i:i+1], 2)
		if len(got) != 0 && len(got) != 1 && len(got) != ttrpcHeaderLen {
			t.Fatalf("byte %d: passed on %d bytes", i, len(got))
		}
		out = append(out, got...)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("got %x\nwant %x", out, want)
	}
	var back frameCursor
	if got := back.feed(want, ^uint32(1)); !bytes.Equal(got, in) {
		t.Fatalf("shift back: got %x\nwant %x", got, in)
	}
}

// refusingAgent refuses a Handover with too little entropy, as the real
// agent does before it changes anything.
type refusingAgent struct{ handoverAgent }

func (a *refusingAgent) Handover(ctx context.Context, req *api.HandoverRequest) (*api.Empty, error) {
	if len(req.Entropy) < 32 {
		return nil, errors.New("reseed: too little entropy")
	}
	return a.handoverAgent.Handover(ctx, req)
}

// TestWarmAgent: warmAgent takes the agent's refusal as the answer it
// wants, and fails when the agent takes the request or does not answer.
func TestWarmAgent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent api.AgentServiceService
		hang  bool
		ok    bool
	}{
		{"refused", &refusingAgent{}, false, true},
		{"accepted", &handoverAgent{}, false, false},
		{"no answer", &refusingAgent{}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "s")
			l, err := net.Listen("unix", sock)
			must(t, err)
			if tc.hang {
				go func() {
					if c, err := l.Accept(); err == nil {
						c.Close()
					}
				}()
			} else {
				srv, err := ttrpc.NewServer()
				must(t, err)
				api.RegisterAgentServiceService(srv, tc.agent)
				go srv.Serve(context.Background(), l)
				t.Cleanup(func() { srv.Close() })
			}
			conn, err := net.Dial("unix", sock)
			must(t, err)
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = warmAgent(ctx, &serialConn{Conn: conn})
			if (err == nil) != tc.ok {
				t.Fatalf("warmAgent = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
