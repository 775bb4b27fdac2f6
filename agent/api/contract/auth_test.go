package contract

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func mustSecret(t *testing.T) []byte {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runAuth runs both sides over a socket pair; after a successful exchange
// each side reads the other's first session bytes.
func runAuth(t *testing.T, guestSecret, hostSecret []byte) (guestErr, hostErr error) {
	t.Helper()
	host, guest := socketPair(t)
	deadline := time.Now().Add(5 * time.Second)
	host.SetDeadline(deadline)
	guest.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		err := GuestAuth(guest, guestSecret, TransportVsock, "")
		if err != nil {
			guest.Close() // as the agent does
		} else if line, rerr := bufio.NewReader(guest).ReadString('\n'); rerr != nil || line != "first call\n" {
			t.Errorf("guest read %q (%v) after auth, want the session's first bytes", line, rerr)
		}
		done <- err
	}()
	hostErr = HostAuth(host, hostSecret, TransportVsock)
	if hostErr == nil {
		io.WriteString(host, "first call\n")
	}
	return <-done, hostErr
}

func TestAuthGoodSecret(t *testing.T) {
	s := mustSecret(t)
	if gerr, herr := runAuth(t, s, s); gerr != nil || herr != nil {
		t.Fatalf("guest: %v; host: %v", gerr, herr)
	}
}

func TestAuthWrongSecret(t *testing.T) {
	gerr, herr := runAuth(t, mustSecret(t), mustSecret(t))
	if !errors.Is(gerr, ErrAuthFailed) {
		t.Errorf("guest err = %v, want ErrAuthFailed", gerr)
	}
	if !errors.Is(herr, ErrAuthFailed) {
		t.Errorf("host err = %v, want ErrAuthFailed", herr)
	}
}

// The answer covers the transport: one made for another transport fails.
func TestAuthBindsTransport(t *testing.T) {
	s := mustSecret(t)
	host, guest := socketPair(t)
	host.SetDeadline(time.Now().Add(5 * time.Second))
	guest.SetDeadline(time.Now().Add(5 * time.Second))
	done := make(chan error, 1)
	go func() { done <- GuestAuth(guest, s, TransportSerial, ""); guest.Close() }()
	HostAuth(host, s, TransportVsock)
	if err := <-done; !errors.Is(err, ErrAuthFailed) {
		t.Errorf("guest err = %v, want ErrAuthFailed", err)
	}
}

// guestAgainst runs GuestAuth against a scripted host that sees the
// challenge and returns what to send.
func guestAgainst(t *testing.T, s []byte, skip string, host func(challenge string) string) (error, string) {
	t.Helper()
	h, g := socketPair(t)
	h.SetDeadline(time.Now().Add(5 * time.Second))
	g.SetDeadline(time.Now().Add(500 * time.Millisecond))
	done := make(chan error, 1)
	go func() { done <- GuestAuth(g, s, TransportVsock, skip); g.Close() }()
	r := bufio.NewReader(h)
	challenge, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(h, host(challenge))
	gerr := <-done
	rest, _ := io.ReadAll(r)
	return gerr, string(rest)
}

func TestGuestAuthRejects(t *testing.T) {
	s := mustSecret(t)
	var recorded string
	// A good answer, recorded for the replay below.
	gerr, rest := guestAgainst(t, s, "", func(challenge string) string {
		var buf strings.Builder
		pr, pw := io.Pipe()
		go func() { io.WriteString(pw, challenge+AcceptedLine) }()
		HostAuth(stream{pr, &buf}, s, TransportVsock)
		recorded = buf.String()
		return recorded
	})
	if gerr != nil || rest != AcceptedLine {
		t.Fatalf("good answer: err = %v, guest wrote %q", gerr, rest)
	}
	for name, send := range map[string]string{
		"no answer":       "",
		"garbage":         "\x00\x00\x00\x10garbage\n",
		"empty answer":    AnswerPrefix + "\n",
		"short answer":    AnswerPrefix + "abcd\n",
		"oversize line":   strings.Repeat("a", 10*maxLine) + "\n",
		"replayed answer": recorded,
		"secret itself":   AnswerPrefix + string(s) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			gerr, rest := guestAgainst(t, s, "", func(string) string { return send })
			if !errors.Is(gerr, ErrAuthFailed) {
				t.Errorf("err = %v, want ErrAuthFailed", gerr)
			}
			if rest != "" {
				t.Errorf("guest wrote %q after the challenge, want nothing", rest)
			}
		})
	}
}

// On serial the host may repeat its hello before answering; the guest
// drops those lines, and only those.
func TestGuestAuthSkipsRepeatedHello(t *testing.T) {
	s := mustSecret(t)
	hello := HelloPrefix + "00ff\n"
	host, guest := socketPair(t)
	host.SetDeadline(time.Now().Add(5 * time.Second))
	guest.SetDeadline(time.Now().Add(5 * time.Second))
	done := make(chan error, 1)
	go func() { done <- GuestAuth(guest, s, TransportSerial, hello) }()
	io.WriteString(host, hello+hello)
	if err := HostAuth(host, s, TransportSerial); err != nil {
		t.Fatalf("host: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("guest: %v", err)
	}
	gerr, _ := guestAgainst(t, s, hello, func(string) string { return HelloPrefix + "0abc\n" })
	if !errors.Is(gerr, ErrAuthFailed) {
		t.Errorf("another hello: err = %v, want ErrAuthFailed", gerr)
	}
}

func TestHostAuthRejects(t *testing.T) {
	s := mustSecret(t)
	for name, from := range map[string]string{
		"nothing":          "",
		"garbage":          "hello\n",
		"short challenge":  ChallengePrefix + "abcd\n",
		"oversize line":    strings.Repeat("c", 10*maxLine),
		"no accepted line": ChallengePrefix + strings.Repeat("ab", challengeSize) + "\n",
		"other reply":      ChallengePrefix + strings.Repeat("ab", challengeSize) + "\nnope\n",
	} {
		if err := HostAuth(stream{strings.NewReader(from), io.Discard}, s, TransportVsock); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// On serial the agent's refusal shows as its next ready line.
	refused := ChallengePrefix + strings.Repeat("ab", challengeSize) + "\n" + ReadyLine
	if err := HostAuth(stream{strings.NewReader(refused), io.Discard}, s, TransportSerial); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("a ready line after the answer: err = %v, want ErrAuthFailed", err)
	}
	if err := HostAuth(stream{strings.NewReader(""), io.Discard}, s[:16], TransportVsock); err == nil {
		t.Error("a 16-byte secret was used")
	}
}

func TestOEMString(t *testing.T) {
	s := mustSecret(t)
	got, ok := ParseOEMString(OEMString(s))
	if !ok || string(got) != string(s) {
		t.Fatalf("round trip: %x, %v", got, ok)
	}
	for _, bad := range []string{"", "io.podvm.secret=zz", OEMStringPrefix + "abcd", "other=" + OEMString(s)[len(OEMStringPrefix):]} {
		if _, ok := ParseOEMString(bad); ok {
			t.Errorf("ParseOEMString(%q) accepted", bad)
		}
	}
}
