package contract

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// The virtio-serial handshake. A port is one byte stream without
// connections: the guest kernel drops what the host sends while the guest
// has the port closed, and holds what the guest writes while no host is
// connected for whichever host connects next. So a new host connection can
// begin with stale bytes of an earlier session (a ready line, the tail of
// a reply), and a guest can miss a short hang-up and go on with the old
// session. The handshake puts both ends at the start of one session:
//
//  1. the agent opens the port and, once a host is connected, writes
//     ReadyLine;
//  2. the host skips everything up to a ready line, then writes
//     HelloPrefix + a nonce of its own + "\n" (one per ready line it
//     reads, so a resent hello always answers a fresh ready line);
//  3. the agent skips everything up to a hello line and answers
//     OKPrefix + the same nonce + "\n"; it then drops any further hello
//     with that nonce before serving ttrpc;
//  4. the host skips everything up to the answer with its nonce; the next
//     byte is the session's first. Stale bytes precede the answer, since
//     the stream keeps its order.
//
// HostHandshake and GuestHandshake are the two sides; deadlines are the
// caller's, set on the stream.
const (
	ReadyLine   = "podvm-agent ready\n"
	HelloPrefix = "podvm-hello "
	OKPrefix    = "podvm-ok "
)

// maxLine bounds a handshake line; longer runs without a newline are
// skipped as stale bytes.
const maxLine = 128

// maxNonce bounds a nonce: 1 to 64 lower-case hex digits.
const maxNonce = 64

// NewNonce returns a fresh nonce for HostHandshake: 8 random bytes in hex.
func NewNonce() (string, error) {
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return "", fmt.Errorf("handshake nonce: %w", err)
	}
	return hex.EncodeToString(n[:]), nil
}

// HostHandshake is the host's side: it skips stale bytes up to a ready
// line, sends a hello with nonce for each ready line, and returns once the
// agent has echoed nonce. Nothing after the echo is consumed.
func HostHandshake(rw io.ReadWriter, nonce string) error {
	if !validNonce(nonce) {
		return fmt.Errorf("handshake nonce %q: want 1 to %d lower-case hex digits", nonce, maxNonce)
	}
	hello := HelloPrefix + nonce + "\n"
	ok := OKPrefix + nonce
	ready := strings.TrimSuffix(ReadyLine, "\n")
	sentHello := false
	err := readLines(rw, func(line string) (bool, error) {
		// Suffixes: a stale run without a newline may precede a line.
		switch {
		case strings.HasSuffix(line, ready):
			sentHello = true
			_, err := io.WriteString(rw, hello)
			return false, err
		case strings.HasSuffix(line, ok):
			return true, nil
		}
		return false, nil // stale bytes of an earlier session
	})
	if err != nil {
		if !sentHello {
			return fmt.Errorf("wait for the agent's ready line: %w", err)
		}
		return fmt.Errorf("wait for the agent's answer to hello %s: %w", nonce, err)
	}
	return nil
}

// GuestHandshake is the agent's side: it announces itself with ReadyLine,
// skips stale bytes up to the host's hello and echoes its nonce. It returns
// the hello line, which the agent drops if the host sends it again before
// the session's first call. Nothing after the hello is consumed.
func GuestHandshake(rw io.ReadWriter) (string, error) {
	if _, err := io.WriteString(rw, ReadyLine); err != nil {
		return "", fmt.Errorf("write ready line: %w", err)
	}
	var hello string
	err := readLines(rw, func(line string) (bool, error) {
		nonce, ok := parseHello(line)
		if !ok {
			return false, nil // stale bytes of an earlier session
		}
		if _, err := io.WriteString(rw, OKPrefix+nonce+"\n"); err != nil {
			return false, fmt.Errorf("answer the host's hello: %w", err)
		}
		hello = HelloPrefix + nonce + "\n"
		return true, nil
	})
	if err != nil {
		if hello == "" {
			return "", fmt.Errorf("wait for the host's hello: %w", err)
		}
		return "", err
	}
	return hello, nil
}

// parseHello finds a hello at the end of line (stale bytes may precede
// it) and returns its nonce.
func parseHello(line string) (string, bool) {
	i := strings.LastIndex(line, HelloPrefix)
	if i < 0 {
		return "", false
	}
	nonce := line[i+len(HelloPrefix):]
	return nonce, validNonce(nonce)
}

// validNonce accepts what NewNonce makes: 1 to maxNonce lower-case hex
// digits.
func validNonce(s string) bool {
	if len(s) == 0 || len(s) > maxNonce {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// readLines reads r a byte at a time (nothing past the line that ends the
// handshake may be consumed: the session's bytes follow it) and calls line
// for each line, without its newline, until line returns done or an error.
// Runs longer than maxLine without a newline are dropped.
func readLines(r io.Reader, line func(string) (done bool, err error)) error {
	var buf []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		if b[0] != '\n' {
			if len(buf) < maxLine {
				buf = append(buf, b[0])
			} else {
				buf = buf[:0]
			}
			continue
		}
		done, err := line(string(buf))
		if done || err != nil {
			return err
		}
		buf = buf[:0]
	}
}
