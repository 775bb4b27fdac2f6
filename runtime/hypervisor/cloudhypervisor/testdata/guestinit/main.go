// Command guestinit is /init of the end-to-end test's guest (a static
// binary in an initramfs): it mounts the virtio-fs share, reads the agent
// secret from the SMBIOS OEM strings as podvm-agent does, and serves vsock
// port 1024. Each connection that passes the agent's check
// (contract.GuestAuth) is greeted with "guestinit ready <contents of
// hello.txt on the share>", then each line is echoed back, except "panic",
// which makes init exit (the kernel panics, and with panic=-1 resets).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/secret"
)

const port = 1024

func main() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sys", "/sys", "sysfs"}, {"dev", "/dev", "devtmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil {
			fmt.Printf("guestinit: mount %s: %v\n", m.dst, err)
		}
	}
	os.MkdirAll("/mnt", 0o755)
	if err := unix.Mount("podvm", "/mnt", "virtiofs", 0, ""); err != nil {
		fmt.Printf("guestinit: mount virtiofs: %v\n", err)
	}
	key, from, err := secret.Read()
	if err != nil {
		fmt.Printf("guestinit: %v\n", err)
		select {}
	}
	fmt.Printf("guestinit: agent secret read from %s\n", from)
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port})
	}
	if err == nil {
		err = unix.Listen(fd, 8)
	}
	if err != nil {
		fmt.Printf("guestinit: vsock port %d: %v\n", port, err)
		select {}
	}
	fmt.Printf("guestinit: listening on vsock port %d\n", port)
	for {
		nfd, _, err := unix.Accept(fd)
		if err != nil {
			fmt.Printf("guestinit: accept: %v\n", err)
			continue
		}
		go serve(os.NewFile(uintptr(nfd), "vsock"), key)
	}
}

func serve(c *os.File, key []byte) {
	defer c.Close()
	if err := contract.GuestAuth(c, key, contract.TransportVsock, ""); err != nil {
		fmt.Printf("guestinit: %v\n", err)
		return
	}
	hello, err := os.ReadFile("/mnt/hello.txt")
	if err != nil {
		hello = []byte("no share: " + err.Error())
	}
	fmt.Fprintf(c, "guestinit ready %s\n", strings.TrimSpace(string(hello)))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if sc.Text() == "panic" {
			fmt.Println("guestinit: exiting on request")
			os.Exit(3)
		}
		fmt.Fprintf(c, "echo %s\n", sc.Text())
	}
}
