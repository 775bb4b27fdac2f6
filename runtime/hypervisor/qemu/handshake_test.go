package qemu

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
)

// testSecret is the secret of the test launches.
var testSecret = []byte(strings.Repeat("k", contract.SecretSize))

func serialLaunch() launch {
	return launch{Transport: contract.TransportSerial, Secret: testSecret}
}

// guestSide plays the agent on the far end of c: it writes before, then
// for each hello it reads answers with the nonce (after writing between
// the first time), checks the host's secret, and returns what followed
// the handshake.
func guestSide(c net.Conn, before, between string, answer bool) <-chan string {
	rest := make(chan string, 1)
	go func() {
		defer close(rest)
		io.WriteString(c, before)
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		nonce := strings.TrimSuffix(strings.TrimPrefix(line, contract.HelloPrefix), "\n")
		if !strings.HasPrefix(line, contract.HelloPrefix) {
			rest <- "bad hello " + line
			return
		}
		io.WriteString(c, between)
		if answer {
			io.WriteString(c, contract.OKPrefix+nonce+"\n")
			if err := contract.GuestAuth(struct {
				io.Reader
				io.Writer
			}{r, c}, testSecret, contract.TransportSerial, line); err != nil {
				rest <- "auth: " + err.Error()
				return
			}
		}
		b, _ := r.ReadString('\n')
		rest <- b
	}()
	return rest
}

func TestHandshake(t *testing.T) {
	ready := contract.ReadyLine
	for _, tc := range []struct {
		name, before, between string
		answer                bool
		wantErr               string
	}{
		{name: "clean", before: ready, answer: true},
		{name: "stale reply tail before the ready line", before: "\x00\x00\x00\x05\x00\x00\x00\x01\x02\x00hello" + ready, answer: true},
		{name: "stale bytes glued to the ready line", before: "abc" + ready, answer: true},
		{name: "answer for another nonce first", before: ready, between: contract.OKPrefix + "ffff\n", answer: true},
		{name: "no ready line", before: "garbage\n", wantErr: "ready line"},
		{name: "no answer", before: ready, wantErr: "answer to hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := net.Pipe()
			defer host.Close()
			defer guest.Close()
			rest := guestSide(guest, tc.before, tc.between, tc.answer)
			// The failures come from the timeout; a handshake that is to
			// succeed gets a bound a loaded machine cannot reach.
			timeout := 300 * time.Millisecond
			if tc.wantErr == "" {
				timeout = 10 * time.Second
			}
			err := handshake(context.Background(), host, timeout, serialLaunch())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			// The connection starts clean: the first bytes after are ours.
			io.WriteString(host, "first request\n")
			if got := <-rest; got != "first request\n" {
				t.Fatalf("guest read %q after the handshake", got)
			}
		})
	}
}

// A second ready line (the agent started over) gets a second hello.
func TestHandshakeHelloPerReadyLine(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	defer guest.Close()
	done := make(chan error, 1)
	go func() { done <- handshake(context.Background(), host, 2*time.Second, serialLaunch()) }()
	r := bufio.NewReader(guest)
	var nonce string
	for range 2 {
		io.WriteString(guest, contract.ReadyLine)
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, contract.HelloPrefix) {
			t.Fatalf("read %q (%v), want a hello", line, err)
		}
		nonce = strings.TrimSpace(strings.TrimPrefix(line, contract.HelloPrefix))
	}
	io.WriteString(guest, contract.OKPrefix+nonce+"\n")
	if err := contract.GuestAuth(struct {
		io.Reader
		io.Writer
	}{r, guest}, testSecret, contract.TransportSerial, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// On vsock there is no port handshake, only the secret; a wrong secret
// fails the dial.
func TestHandshakeVsockAuth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret []byte
	}{{"right secret", testSecret}, {"wrong secret", []byte(strings.Repeat("x", contract.SecretSize))}} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := net.Pipe()
			defer host.Close()
			guestErr := make(chan error, 1)
			go func() {
				err := contract.GuestAuth(guest, testSecret, contract.TransportVsock, "")
				guest.Close()
				guestErr <- err
			}()
			l := launch{Transport: contract.TransportVsock, Secret: tc.secret}
			err := handshake(context.Background(), host, 2*time.Second, l)
			gerr := <-guestErr
			right := string(tc.secret) == string(testSecret)
			if right != (err == nil) || right != (gerr == nil) {
				t.Fatalf("host: %v; guest: %v", err, gerr)
			}
			if !right && !errors.Is(err, contract.ErrAuthFailed) {
				t.Errorf("host err = %v, want ErrAuthFailed", err)
			}
		})
	}
}
