package guestinit

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The random driver's ioctls (linux/random.h); x/sys/unix does not name them.
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07)
	minSeedEntropy = 32
)

// RandomDevice is the device Reseed issues its ioctls on (a variable for tests).
var RandomDevice = "/dev/urandom"

// Reseed gives the kernel's random generator the host's seed and makes it
// rekey at once. A VM restored from a template starts with the template's
// generator state, which every clone shares: without this, two clones
// would produce the same "random" bytes (and boot_id, which the kernel
// makes on first read). The seed is credited as entropy, since it comes
// from the host's generator over the host's own channel.
func Reseed(seed []byte) error {
	if len(seed) < minSeedEntropy {
		return fmt.Errorf("reseed: %d bytes of seed, want at least %d", len(seed), minSeedEntropy)
	}
	f, err := os.OpenFile(RandomDevice, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+(len(seed)+3)&^3)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(seed)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))
	copy(info[8:], seed)
	if err := ioctl(f, rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); err != nil {
		return fmt.Errorf("reseed: add the host's seed (RNDADDENTROPY): %w", err)
	}
	runtime.KeepAlive(info)
	if err := ioctl(f, rndReseedCRNG, 0); err != nil {
		return fmt.Errorf("reseed: rekey the generator (RNDRESEEDCRNG): %w", err)
	}
	return nil
}

func ioctl(f *os.File, req, arg uintptr) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
