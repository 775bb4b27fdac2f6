package contract

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stream is one end of the channel as a side sees it: stale bytes of an
// earlier session, then the peer's writes.
type stream struct {
	io.Reader
	io.Writer
}

// socketPair is a connected, buffered stream like the port's.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

func withStale(c net.Conn, stale string) io.ReadWriter {
	return stream{io.MultiReader(strings.NewReader(stale), c), c}
}

// Both sides, each behind stale bytes, reach the start of one session and
// consume nothing of it.
func TestHandshakeBothSides(t *testing.T) {
	for _, tc := range []struct{ name, staleAtHost, staleAtGuest string }{
		{name: "clean"},
		{name: "stale ready line and reply tail at the host",
			staleAtHost: ReadyLine + "\x00\x00\x00\x05\x00\x00\x00\x01\x02\x00tail"},
		{name: "stale hello and ttrpc bytes at the guest",
			staleAtGuest: HelloPrefix + "zz-not-hex\n\x00\x00\x00\x09garbage"},
		{name: "overlong runs at both", staleAtHost: strings.Repeat("x", 3*maxLine) + "\n", staleAtGuest: strings.Repeat("y", 3*maxLine) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest := socketPair(t)
			deadline := time.Now().Add(5 * time.Second)
			host.SetDeadline(deadline)
			guest.SetDeadline(deadline)
			nonce, err := NewNonce()
			if err != nil {
				t.Fatal(err)
			}
			guestDone := make(chan error, 1)
			go func() {
				hello, err := GuestHandshake(withStale(guest, tc.staleAtGuest))
				if err == nil && hello != HelloPrefix+nonce+"\n" {
					t.Errorf("guest returned hello %q, want the one with nonce %s", hello, nonce)
				}
				if err == nil {
					// The session's first bytes are the host's request,
					// after repeats of the hello (one per ready line the
					// host saw), which the agent drops.
					r := bufio.NewReader(guest)
					got := hello
					for got == hello && err == nil {
						got, err = r.ReadString('\n')
					}
					if got != "first request\n" {
						t.Errorf("guest read %q after the handshake", got)
					}
				}
				guestDone <- err
			}()
			if err := HostHandshake(withStale(host, tc.staleAtHost), nonce); err != nil {
				t.Fatalf("host: %v", err)
			}
			io.WriteString(host, "first request\n")
			if err := <-guestDone; err != nil {
				t.Fatalf("guest: %v", err)
			}
		})
	}
}

// The host answers every ready line with a hello and ignores answers to
// other nonces (a stale session's).
func TestHostHandshakeSkipsOtherNonces(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	defer guest.Close()
	guest.SetDeadline(time.Now().Add(5 * time.Second))
	done := make(chan error, 1)
	go func() { done <- HostHandshake(host, "00ff") }()
	r := bufio.NewReader(guest)
	for range 2 {
		io.WriteString(guest, "stale"+ReadyLine)
		if line, err := r.ReadString('\n'); err != nil || line != HelloPrefix+"00ff\n" {
			t.Fatalf("read %q (%v), want a hello with nonce 00ff", line, err)
		}
	}
	io.WriteString(guest, OKPrefix+"ffff\n"+"junk"+OKPrefix+"00ff\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHostHandshakeErrors(t *testing.T) {
	if err := HostHandshake(stream{strings.NewReader(""), io.Discard}, "NOT-HEX"); err == nil {
		t.Error("an invalid nonce was accepted")
	}
	err := HostHandshake(stream{strings.NewReader("garbage\n"), io.Discard}, "ab")
	if err == nil || !strings.Contains(err.Error(), "ready line") {
		t.Errorf("no ready line: err = %v", err)
	}
	err = HostHandshake(stream{strings.NewReader(ReadyLine), io.Discard}, "ab")
	if err == nil || !strings.Contains(err.Error(), "answer to hello ab") {
		t.Errorf("no answer: err = %v", err)
	}
}

func TestGuestHandshakeNoHello(t *testing.T) {
	var sent strings.Builder
	_, err := GuestHandshake(stream{strings.NewReader(HelloPrefix + "\n" + HelloPrefix + "ABC\n"), &sent})
	if err == nil || !strings.Contains(err.Error(), "host's hello") {
		t.Errorf("err = %v, want one saying no hello came", err)
	}
	if sent.String() != ReadyLine {
		t.Errorf("guest wrote %q, want only the ready line", sent.String())
	}
}

func TestParseHello(t *testing.T) {
	for line, want := range map[string]string{
		HelloPrefix + "0123abcd":                      "0123abcd",
		"stale" + HelloPrefix + "ab":                  "ab",
		HelloPrefix + "11" + HelloPrefix + "22":       "22",
		HelloPrefix + strings.Repeat("a", maxNonce):   strings.Repeat("a", maxNonce),
		HelloPrefix + strings.Repeat("a", maxNonce+1): "",
		HelloPrefix:          "",
		HelloPrefix + "ABCD": "",
		HelloPrefix + "12 ":  "",
		"podvm-ok 12":        "",
	} {
		nonce, ok := parseHello(line)
		if ok != (want != "") || ok && nonce != want {
			t.Errorf("parseHello(%q) = %q, %v; want %q", line, nonce, ok, want)
		}
	}
}

func TestNewNonceIsValid(t *testing.T) {
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewNonce()
	if !validNonce(a) || len(a) != 16 || a == b {
		t.Errorf("NewNonce = %q then %q", a, b)
	}
}

// Lines handed to the callback never exceed maxLine, and reading stops at
// the newline of the line that ends it.
func TestReadLinesBounded(t *testing.T) {
	r := strings.NewReader(strings.Repeat("x", 5*maxLine) + "\nend\nafter")
	var lines []string
	err := readLines(r, func(l string) (bool, error) {
		lines = append(lines, l)
		return l == "end", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if len(l) > maxLine {
			t.Errorf("a line of %d bytes reached the callback", len(l))
		}
	}
	if rest, _ := io.ReadAll(r); string(rest) != "after" {
		t.Errorf("left %q unread, want %q", rest, "after")
	}
}
