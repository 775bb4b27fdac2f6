package contract

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Authentication: a per-VM secret, checked before any ttrpc call on every
// transport. AF_VSOCK is not network-namespaced, so without it any process
// on the node that may open an AF_VSOCK socket could call the agent of
// every VM (issue 14). The shim makes SecretSize random bytes per VM and
// hands them to the guest outside any command line (FwCfgSecretName,
// OEMStringPrefix); the agent reads them once at boot.
//
// After the transport's own framing (serial: the ready/hello/ok lines;
// vsock: connect; hybrid vsock: after the VMM's OK line):
//
//  1. the agent writes ChallengePrefix + 32 fresh random bytes in hex + "\n";
//  2. the host writes AnswerPrefix + hex(HMAC-SHA256(secret, context)) +
//     "\n", where the context binds the answer to this challenge and this
//     transport (see answer);
//  3. the agent compares in constant time and, if equal, writes
//     AcceptedLine; the next byte either way is the session's first.
//     Otherwise it closes the connection with no call served.
//
// The secret never crosses the channel, and an answer is good for one
// challenge only, so a recorded answer cannot be replayed. GuestAuth and
// HostAuth are the two sides; deadlines are the caller's, set on the
// stream.
const (
	ChallengePrefix = "podvm-challenge "
	AnswerPrefix    = "podvm-answer "
	AcceptedLine    = "podvm-accepted\n"
)

// SecretSize is the length of a VM's secret in bytes.
const SecretSize = 32

// challengeSize is the length of the agent's challenge in bytes.
const challengeSize = 32

// authLabel separates this use of the secret from any other.
const authLabel = "podvm-agent-auth-v1"

// FwCfgSecretName is the QEMU fw_cfg file that carries the secret, as is
// (raw bytes); the guest reads it at FwCfgSecretPath.
const (
	FwCfgSecretName = "opt/io.podvm/secret"
	FwCfgSecretPath = "/sys/firmware/qemu_fw_cfg/by_name/" + FwCfgSecretName + "/raw"
)

// OEMStringPrefix starts the SMBIOS OEM string (type 11) that carries the
// secret in hex where the VMM has no fw_cfg (Cloud Hypervisor).
const OEMStringPrefix = "io.podvm.secret="

// ErrAuthFailed is a connection whose host did not prove it holds the
// secret.
var ErrAuthFailed = errors.New("agent authentication failed")

// NewSecret returns a fresh secret for one VM.
func NewSecret() ([]byte, error) {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("agent secret: %w", err)
	}
	return s, nil
}

// CheckSecret rejects a secret of the wrong size: a truncated read must
// not become a weaker key.
func CheckSecret(secret []byte) error {
	if len(secret) != SecretSize {
		return fmt.Errorf("agent secret: %d bytes, want %d", len(secret), SecretSize)
	}
	return nil
}

// OEMString is the SMBIOS OEM string that carries secret.
func OEMString(secret []byte) string { return OEMStringPrefix + hex.EncodeToString(secret) }

// ParseOEMString returns the secret an OEM string carries, if it is one.
func ParseOEMString(s string) ([]byte, bool) {
	h, ok := strings.CutPrefix(s, OEMStringPrefix)
	if !ok {
		return nil, false
	}
	secret, err := hex.DecodeString(h)
	if err != nil || CheckSecret(secret) != nil {
		return nil, false
	}
	return secret, true
}

// answer is HMAC-SHA256 keyed with the secret over the label, the
// challenge and the transport's name, each ended by a zero byte.
func answer(secret, challenge []byte, transport Transport) []byte {
	m := hmac.New(sha256.New, secret)
	for _, part := range [][]byte{[]byte(authLabel), challenge, []byte(transport)} {
		m.Write(part)
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// GuestAuth is the agent's side: it sends a fresh challenge and returns nil
// only if the host's answer is right, after writing AcceptedLine. Lines
// equal to skip (the serial hello, which a host may repeat) before the
// answer are dropped; anything else is a failure. Nothing after the answer
// is consumed.
func GuestAuth(rw io.ReadWriter, secret []byte, transport Transport, skip string) error {
	if err := CheckSecret(secret); err != nil {
		return err
	}
	challenge := make([]byte, challengeSize)
	if _, err := rand.Read(challenge); err != nil {
		return fmt.Errorf("auth challenge: %w", err)
	}
	if _, err := io.WriteString(rw, ChallengePrefix+hex.EncodeToString(challenge)+"\n"); err != nil {
		return fmt.Errorf("send auth challenge: %w", err)
	}
	skip = strings.TrimSuffix(skip, "\n")
	for {
		line, err := readLine(rw)
		if err != nil {
			return fmt.Errorf("%w: read the host's answer: %w", ErrAuthFailed, err)
		}
		if skip != "" && line == skip {
			continue
		}
		h, ok := strings.CutPrefix(line, AnswerPrefix)
		got, derr := hex.DecodeString(h)
		if !ok || derr != nil || !hmac.Equal(got, answer(secret, challenge, transport)) {
			return fmt.Errorf("%w: wrong answer", ErrAuthFailed)
		}
		if _, err := io.WriteString(rw, AcceptedLine); err != nil {
			return fmt.Errorf("accept the host's answer: %w", err)
		}
		return nil
	}
}

// HostAuth is the host's side: it reads the agent's challenge, answers it
// and waits for AcceptedLine. Nothing after that line is consumed.
func HostAuth(rw io.ReadWriter, secret []byte, transport Transport) error {
	if err := CheckSecret(secret); err != nil {
		return err
	}
	line, err := readLine(rw)
	if err != nil {
		return fmt.Errorf("wait for the agent's auth challenge: %w", err)
	}
	h, ok := strings.CutPrefix(line, ChallengePrefix)
	challenge, derr := hex.DecodeString(h)
	if !ok || derr != nil || len(challenge) != challengeSize {
		return fmt.Errorf("agent sent %q, want an auth challenge", truncate(line))
	}
	if _, err := io.WriteString(rw, AnswerPrefix+hex.EncodeToString(answer(secret, challenge, transport))+"\n"); err != nil {
		return fmt.Errorf("answer the agent's auth challenge: %w", err)
	}
	// The agent closes the connection on a wrong answer; on virtio-serial
	// it then reopens the port, and its next ready line is what comes.
	line, err = readLine(rw)
	if err != nil {
		return fmt.Errorf("%w: the agent did not accept the answer (wrong secret?): %w", ErrAuthFailed, err)
	}
	if line+"\n" != AcceptedLine {
		return fmt.Errorf("%w: the agent sent %q, not %q (wrong secret?)", ErrAuthFailed, truncate(line), strings.TrimSuffix(AcceptedLine, "\n"))
	}
	return nil
}

// errLineTooLong is an auth line longer than maxLine: nothing the other
// side sends in this exchange is.
var errLineTooLong = errors.New("line too long")

// readLine reads one line of at most maxLine bytes, a byte at a time so
// that nothing past it is consumed, and returns it without its newline.
func readLine(r io.Reader) (string, error) {
	var buf []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(buf), nil
		}
		if len(buf) == maxLine {
			return "", errLineTooLong
		}
		buf = append(buf, b[0])
	}
}

// truncate shortens a line for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
