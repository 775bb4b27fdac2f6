// Package guestimage builds the podvm guest image: a Linux kernel and an
// initramfs, the two files the VMM boots for every pod.
//
// The kernel is Debian's linux-source-6.1 with the patches in patches/,
// configured as `make tinyconfig` plus kernel.fragment (both embedded in this
// package), everything built in, no modules. The builder checks that Kconfig
// kept every option the fragment sets and otherwise fails with the list of
// dropped options and their dependencies. The output is the uncompressed ELF
// vmlinux, which QEMU's microvm and Cloud Hypervisor boot directly through
// its PVH entry note: no firmware, no bzImage decompressor. Under TCG on our
// machines a bzImage boots about twice as slowly as the PVH vmlinux
// (design.md, "The machine"); docs/guest-image.md has our boot figures.
//
// The initramfs is an uncompressed cpio "newc" archive written here in Go:
// /init is the static podvm-agent, /usr/bin/runc a static runc, plus the
// mount-point directories and /dev/console. It is uncompressed for the same
// reason: decompression is slow under TCG, and the archive is read once per
// boot from the host page cache. Entries are sorted with fixed inode numbers,
// mtime 0 and uid/gid 0, so equal inputs give byte-identical archives.
//
// Both outputs are cached by content under $PODVM_CACHE/guestimage
// (default /var/cache/podvm/guestimage):
//
//	kernel-<key>/{vmlinux,kernel.release,config}  key: fragment, source tree key,
//	                                              gcc version, builder version, make env
//	initramfs-<key>.cpio                          key: agent and runc contents, layout version
//	src/linux-<key>/                              extracted, patched source tree, reused by
//	                                              later builds; key: package version,
//	                                              tarball size and mtime, patches
//	logs/kernel-<key>.log                         full output of the last build
//
// Results appear by rename only, so an interrupted build never looks done,
// and a build whose key is already in the cache returns in milliseconds.
// Build and Install are the API `podvm image build` uses.
package guestimage
