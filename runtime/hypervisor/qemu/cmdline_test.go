package qemu

import (
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/hypervisor"
)

func baseLaunch() launch {
	return launch{
		ID: "sb1", StateDir: "/run/podvm/sb1",
		Kernel: "/k/vmlinux", Initrd: "/k/initrd", Cmdline: "console=ttyS0",
		VCPUs: 2, MemoryMiB: 256, TBSizeMiB: 64,
		SharedDir: "/run/podvm/sb1/shared", Seccomp: true,
	}
}

// joined renders args as one string so expectations read like a shell line.
func joined(a []string) string { return strings.Join(a, " ") }

func TestQEMUArgs(t *testing.T) {
	common := []string{
		"-name podvm-sb1,debug-threads=on",
		"-smp 2 -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on",
		"-kernel /k/vmlinux -initrd /k/initrd -append console=ttyS0",
		"-chardev file,id=console,path=/run/podvm/sb1/console.log -serial chardev:console",
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
		for _, tr := range []hypervisor.AgentTransport{hypervisor.TransportSerial, hypervisor.TransportVsock} {
			for _, fs := range []string{SharedFSVirtiofs, SharedFS9p} {
				t.Run(string(acc)+"/"+string(tr)+"/"+fs, func(t *testing.T) {
					l := baseLaunch()
					l.Accel, l.Transport, l.SharedFS = acc, tr, fs
					if tr == hypervisor.TransportVsock {
						l.VsockCID, l.VsockFD = 1234, 3
					}
					got := joined(qemuArgs(l))
					want := append([]string{}, common...)
					no := []string{}
					if acc == hypervisor.AccelKVM {
						want, no = append(want, kvm...), append(no, "tcg", "-cpu max", "rtc=on")
					} else {
						want, no = append(want, tcg...), append(no, "kvm", "-cpu host", "rtc=off")
					}
					if tr == hypervisor.TransportVsock {
						want, no = append(want, vsock), append(no, "virtio-serial", "agent.sock")
					} else {
						want, no = append(want, serial), append(no, "vsock")
					}
					if fs == SharedFS9p {
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
	l.Accel, l.TBSizeMiB, l.Transport, l.VsockCID = hypervisor.AccelTCG, 32, hypervisor.TransportVsock, 7
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
			"console=ttyS0 reboot=t panic=-1 quiet loglevel=4 tsc_early_khz=2596120 tsc=reliable no_timer_check"},
		{"tcg debug with params", hypervisor.AccelTCG, true, 2596120, []string{"agent.log=debug"},
			"console=ttyS0 reboot=t panic=-1 loglevel=8 tsc_early_khz=2596120 tsc=reliable no_timer_check agent.log=debug"},
		{"tcg, tsc unknown", hypervisor.AccelTCG, false, 0, nil,
			"console=ttyS0 reboot=t panic=-1 quiet loglevel=4"},
		{"kvm ignores tsc", hypervisor.AccelKVM, false, 2596120, []string{"x=1"},
			"console=ttyS0 reboot=t panic=-1 quiet loglevel=4 x=1"},
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
