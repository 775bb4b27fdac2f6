package main

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// probe tries one connection and says how it went: exit 0 and "connected",
// 2 and "failed: <why>", 1 for a usage error.
func probe(args []string) int {
	if len(args) < 2 {
		fmt.Println("usage: probe unix PATH | tcp HOST:PORT | vsock CID PORT")
		return 1
	}
	var err error
	switch args[0] {
	case "unix", "tcp":
		var c net.Conn
		if c, err = net.DialTimeout(args[0], args[1], 3*time.Second); err == nil {
			c.Close()
		}
	case "vsock":
		if len(args) < 3 {
			fmt.Println("usage: probe vsock CID PORT")
			return 1
		}
		err = dialVsock(args[1], args[2])
	default:
		fmt.Printf("unknown kind %q\n", args[0])
		return 1
	}
	if err != nil {
		fmt.Printf("failed: %v\n", err)
		return 2
	}
	fmt.Println("connected")
	return 0
}

func dialVsock(cidArg, portArg string) error {
	cid, err := strconv.ParseUint(cidArg, 10, 32)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portArg, 10, 32)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		return fmt.Errorf("socket(AF_VSOCK): %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: uint32(cid), Port: uint32(port)}); err != nil {
		return fmt.Errorf("connect to vsock %d:%d: %w", cid, port, err)
	}
	return nil
}
