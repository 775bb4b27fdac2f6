package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

func baseLaunch() launch {
	return launch{
		Guest: vmm.Guest{ID: "sb1", StateDir: "/run/podvm/sb1",
			Kernel: "/k/vmlinux", Initrd: "/k/initrd", Cmdline: "console=ttyS0",
			VCPUs: 2, MemoryMiB: 256},
		TBSizeMiB: 64,
		SharedDir: "/run/podvm/sb1/shared", Seccomp: true,
		ConsoleFD: 4,
	}
}

// joined renders args as one string so expectations read like a shell line.
func joined(a []string) string { return strings.Join(a, " ") }

func TestQEMUArgs(t *testing.T) {
	common := []string{
		"-name podvm-sb1,debug-threads=on",
		"-smp 2 -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on",
		"-kernel /k/vmlinux -initrd /k/initrd -append console=ttyS0",
		"-add-fd fd=4,set=10,opaque=console -chardev file,id=console,path=/dev/fdset/10,append=on -serial chardev:console",
		"-qmp unix:/run/podvm/sb1/qmp.sock,server=on,wait=off",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	}
	common = append(common,
		"-global virtio-mmio.force-legacy=false -nodefaults -no-user-config -nographic -no-reboot -msg timestamp=on",
	)
	tcg := []string{"-machine microvm,x-option-roms=off,pit=off,pic=off,rtc=on,isa-serial=on,memory-backend=mem",
		"-accel tcg,tb-size=64 -cpu max"}
	kvm := []string{"-machine microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,memory-backend=mem",
		"-accel kvm -cpu host"}
	serial := "-device virtio-serial-device,max_ports=2 -chardev socket,id=agent,path=/run/podvm/sb1/agent.sock,server=on,wait=off -device virtserialport,chardev=agent,name=podvm.agent"
	vsock := "-device vhost-vsock-device,guest-cid=1234,vhostfd=3"
	vfs := "-chardev socket,id=fs,path=/run/podvm/sb1/virtiofsd.sock -device vhost-user-fs-device,chardev=fs,tag=podvm"
	p9 := "-fsdev local,id=fs9p,path=/run/podvm/sb1/shared,security_model=none,multidevs=remap -device virtio-9p-device,fsdev=fs9p,mount_tag=podvm"

	for _, acc := range []hypervisor.Accelerator{hypervisor.AccelTCG, hypervisor.AccelKVM} {
		for _, tr := range []contract.Transport{contract.TransportSerial, contract.TransportVsock} {
			for _, fs := range []string{contract.SharedFSVirtiofs, contract.SharedFS9p} {
				t.Run(string(acc)+"/"+string(tr)+"/"+fs, func(t *testing.T) {
					l := baseLaunch()
					l.Accel, l.Transport, l.SharedFS = acc, tr, fs
					if tr == contract.TransportVsock {
						l.VsockCID, l.VsockFD = 1234, 3
					}
					got := joined(qemuArgs(l))
					want := append([]string{}, common...)
					no := []string{"-netdev", "virtio-net"} // no NICs configured
					if acc == hypervisor.AccelKVM {
						want, no = append(want, kvm...), append(no, "tcg", "-cpu max", "rtc=on")
					} else {
						want, no = append(want, tcg...), append(no, "kvm", "-cpu host", "rtc=off")
					}
					if tr == contract.TransportVsock {
						want, no = append(want, vsock), append(no, "virtio-serial", "agent.sock")
					} else {
						want, no = append(want, serial), append(no, "vsock")
					}
					if fs == contract.SharedFS9p {
						want, no = append(want, p9), append(no, "virtiofsd", "vhost-user-fs")
					} else {
						want, no = append(want, vfs), append(no, "9p")
					}
					for _, w := range want {
						if !strings.Contains(got, w) {
							t.Errorf("missing %q in\n%s", w, got)
						}
					}
					for _, n := range no {
						if strings.Contains(got, n) {
							t.Errorf("unexpected %q in\n%s", n, got)
						}
					}
				})
			}
		}
	}
}

func TestQEMUArgsTBSizeAndVsockWithoutFD(t *testing.T) {
	l := baseLaunch()
	l.Accel, l.TBSizeMiB, l.Transport, l.VsockCID = hypervisor.AccelTCG, 32, contract.TransportVsock, 7
	l.Seccomp = false
	got := joined(qemuArgs(l))
	if strings.Contains(got, "-sandbox") {
		t.Errorf("-sandbox with Seccomp off: %s", got)
	}
	for _, w := range []string{"-accel tcg,tb-size=32", "-device vhost-vsock-device,guest-cid=7 "} {
		if !strings.Contains(got+" ", w) {
			t.Errorf("missing %q in %s", w, got)
		}
	}
}

func TestQEMUArgsNet(t *testing.T) {
	tests := []struct {
		name  string
		vsock bool
		net   []netLaunch
		want  string
	}{
		{"one nic", false,
			[]netLaunch{{FD: 3, MAC: "02:42:0a:fa:00:02"}},
			"-netdev tap,id=net0,fd=3 -device virtio-net-device,netdev=net0,mac=02:42:0a:fa:00:02"},
		{"after the vsock fd", true,
			[]netLaunch{{FD: 4, MAC: "02:42:0a:fa:00:02"}},
			"-device vhost-vsock-device,guest-cid=9,vhostfd=3 -chardev socket,id=fs,path=/run/podvm/sb1/virtiofsd.sock -device vhost-user-fs-device,chardev=fs,tag=podvm " +
				"-netdev tap,id=net0,fd=4 -device virtio-net-device,netdev=net0,mac=02:42:0a:fa:00:02"},
		{"two nics", false,
			[]netLaunch{{FD: 3, MAC: "02:00:00:00:00:01"}, {FD: 4, MAC: "02:00:00:00:00:02"}},
			"-netdev tap,id=net0,fd=3 -device virtio-net-device,netdev=net0,mac=02:00:00:00:00:01 " +
				"-netdev tap,id=net1,fd=4 -device virtio-net-device,netdev=net1,mac=02:00:00:00:00:02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := baseLaunch()
			l.Accel, l.Transport, l.SharedFS, l.Net = hypervisor.AccelTCG, contract.TransportSerial, contract.SharedFSVirtiofs, tt.net
			if tt.vsock {
				l.Transport, l.VsockCID, l.VsockFD = contract.TransportVsock, 9, 3
			}
			got := joined(qemuArgs(l))
			// NICs come last, after the agent channel and the share.
			if !strings.HasSuffix(got, tt.want) {
				t.Errorf("got\n%s\nwant it to end with\n%s", got, tt.want)
			}
			// QEMU 7.2 rejects vnet_hdr= (and ifname=, script=, ...) next
			// to fd=; vhost-net is not available on every host.
			for _, no := range []string{"vnet_hdr", "vhost=on", "script", "ifname"} {
				if strings.Contains(got, no) {
					t.Errorf("unexpected %q in %s", no, got)
				}
			}
		})
	}
}

func TestNetLaunches(t *testing.T) {
	tap := os.Stdin // any non-nil file: only presence is checked
	got, err := netLaunches([]hypervisor.NetDevice{
		{Tap: tap, VnetHdr: true, MAC: "02:42:0A:FA:00:02", MTU: 1450},
		{Tap: tap, MAC: "0e:00:00:00:00:01"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []netLaunch{{MAC: "02:42:0a:fa:00:02"}, {MAC: "0e:00:00:00:00:01"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []struct {
		dev  hypervisor.NetDevice
		want string
	}{
		{hypervisor.NetDevice{MAC: "02:00:00:00:00:01"}, "no tap"},
		{hypervisor.NetDevice{Tap: tap, MAC: "nonsense"}, "not an Ethernet MAC"},
		{hypervisor.NetDevice{Tap: tap, MAC: "02:00:00:00:00:00:00:01"}, "not an Ethernet MAC"},
		{hypervisor.NetDevice{Tap: tap, MAC: "01:00:5e:00:00:01"}, "multicast"},
	} {
		if _, err := netLaunches([]hypervisor.NetDevice{bad.dev}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: err %v, want %q", bad.dev, err, bad.want)
		}
	}
	if got, err := netLaunches(nil); err != nil || got != nil {
		t.Errorf("no NICs: %v, %v", got, err)
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		name  string
		accel hypervisor.Accelerator
		debug bool
		tsc   uint64
		extra []string
		want  string
	}{
		{"tcg quiet", hypervisor.AccelTCG, false, 2596120, nil,
			"console=ttyS0 reboot=t panic=-1 printk.devkmsg=on quiet loglevel=4 tsc_early_khz=2596120 tsc=reliable no_timer_check lapic_timer_khz=1000000"},
		{"tcg debug with params", hypervisor.AccelTCG, true, 2596120, []string{"agent.log=debug"},
			"console=ttyS0 reboot=t panic=-1 printk.devkmsg=on loglevel=8 tsc_early_khz=2596120 tsc=reliable no_timer_check lapic_timer_khz=1000000 agent.log=debug"},
		{"tcg, tsc unknown", hypervisor.AccelTCG, false, 0, nil,
			"console=ttyS0 reboot=t panic=-1 printk.devkmsg=on quiet loglevel=4 lapic_timer_khz=1000000"},
		{"kvm ignores tsc", hypervisor.AccelKVM, false, 2596120, []string{"x=1"},
			"console=ttyS0 reboot=t panic=-1 printk.devkmsg=on quiet loglevel=4 x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kernelCmdline(tt.accel, tt.debug, tt.tsc, tt.extra)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if _, err := kernelCmdline(hypervisor.AccelKVM, false, 0, []string{strings.Repeat("x", 2100)}); err == nil {
		t.Error("over-long command line accepted")
	}
}

// The secret reaches the guest as a fw_cfg file: its path is on the
// command line, the secret never is.
func TestQEMUArgsSecret(t *testing.T) {
	l := baseLaunch()
	l.SecretPath, l.Secret = "/run/podvm/sb1/agent.secret", []byte(strings.Repeat("S", contract.SecretSize))
	got := joined(qemuArgs(l))
	if !strings.Contains(got, "-fw_cfg name=opt/io.podvm/secret,file=/run/podvm/sb1/agent.secret") {
		t.Errorf("no fw_cfg secret in %s", got)
	}
	if strings.Contains(got, string(l.Secret)) {
		t.Errorf("the secret is on the command line: %s", got)
	}
	if got := joined(qemuArgs(baseLaunch())); strings.Contains(got, "-fw_cfg") {
		t.Errorf("fw_cfg without a secret: %s", got)
	}
}
