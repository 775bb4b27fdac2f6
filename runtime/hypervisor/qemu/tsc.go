package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Under TCG the guest's TSC ticks at the host's TSC rate (QEMU reads the host
// counter). A guest told that rate with tsc_early_khz skips calibration, which
// otherwise can hang or go wrong on a loaded host with no PIT. The rate is
// found at run time, most trustworthy source first:
//  1. /sys/devices/system/cpu/cpu0/tsc_freq_khz (exact; only some kernels)
//  2. the kernel log: "tsc: Refined TSC clocksource calibration: X MHz",
//     else "tsc: Detected X MHz processor" (gone once the ring buffer wraps)
//  3. /proc/cpuinfo "cpu MHz", only on constant_tsc CPUs that either know
//     their TSC rate (tsc_known_freq) or lack APERF/MPERF: otherwise that
//     field is the current core clock, not the TSC.
// On this project's build host 2 and 3 agree: 2596.120 MHz.

// Paths read by hostTSCKHz; variables so tests can point them elsewhere.
var (
	tscSysfsPath   = "/sys/devices/system/cpu/cpu0/tsc_freq_khz"
	kmsgPath       = "/dev/kmsg"
	cpuinfoPath    = "/proc/cpuinfo"
	tscOnce        sync.Once
	tscKHz         uint64
	tscSource      string
	tscErr         error
	refinedTSCLine = regexp.MustCompile(`tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz`)
	detectedTSC    = regexp.MustCompile(`tsc: Detected ([0-9.]+) MHz processor`)
)

// HostTSCKHz returns the host TSC frequency in kHz and where it came from.
// The answer is computed once per process.
func HostTSCKHz() (uint64, string, error) {
	tscOnce.Do(func() { tscKHz, tscSource, tscErr = findTSCKHz() })
	return tscKHz, tscSource, tscErr
}

func findTSCKHz() (uint64, string, error) {
	if b, err := os.ReadFile(tscSysfsPath); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			return v, tscSysfsPath, nil
		}
	}
	if log, err := readKmsg(kmsgPath); err == nil {
		if v, ok := tscFromKernelLog(log); ok {
			return v, "kernel log", nil
		}
	}
	if b, err := os.ReadFile(cpuinfoPath); err == nil {
		if v, ok := tscFromCPUInfo(string(b)); ok {
			return v, cpuinfoPath, nil
		}
	}
	return 0, "", errors.New("host TSC frequency not found in " + tscSysfsPath + ", the kernel log or " + cpuinfoPath)
}

// tscFromKernelLog prefers the refined calibration to the early estimate.
func tscFromKernelLog(log string) (uint64, bool) {
	for _, re := range []*regexp.Regexp{refinedTSCLine, detectedTSC} {
		if m := re.FindAllStringSubmatch(log, -1); m != nil {
			if v, ok := mhzToKHz(m[len(m)-1][1]); ok {
				return v, true
			}
		}
	}
	return 0, false
}

func tscFromCPUInfo(info string) (uint64, bool) {
	var mhz string
	var flags map[string]bool
	sc := bufio.NewScanner(strings.NewReader(info))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "cpu MHz":
			if mhz == "" {
				mhz = strings.TrimSpace(val)
			}
		case "flags":
			if flags == nil {
				flags = map[string]bool{}
				for _, f := range strings.Fields(val) {
					flags[f] = true
				}
			}
		}
	}
	if !flags["constant_tsc"] || (!flags["tsc_known_freq"] && flags["aperfmperf"]) {
		return 0, false
	}
	return mhzToKHz(mhz)
}

func mhzToKHz(s string) (uint64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, false
	}
	return uint64(math.Round(f * 1000)), true
}

// readKmsg reads every record currently in the kernel ring buffer without
// blocking. Each read(2) of /dev/kmsg returns one record; EAGAIN means the
// end. Raw syscalls on purpose: os.File would park on the poller instead of
// returning EAGAIN.
func readKmsg(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var sb strings.Builder
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EAGAIN || (err == nil && n == 0):
			return sb.String(), nil
		case err == unix.EPIPE || err == unix.EINTR:
			// EPIPE: a record was overwritten while we read; go on.
		case err != nil:
			return sb.String(), fmt.Errorf("read %s: %w", path, err)
		default:
			sb.Write(buf[:n])
		}
	}
}
