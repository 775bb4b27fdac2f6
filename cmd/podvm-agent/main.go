// Command podvm-agent is PID 1 of a podvm guest: it prepares the VM, then
// serves AgentService to the host's shim over vsock or virtio-serial and
// runs the pod's containers with runc. See docs/agent.md.
//
// Off the guest (tests), -listen unix:PATH -secret-file FILE serves on a
// unix socket, admitting hosts that hold the secret in FILE, and the
// PID-1-only setup is skipped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/agent/container"
	"github.com/podvm/podvm/agent/guestinit"
	"github.com/podvm/podvm/agent/network"
	"github.com/podvm/podvm/agent/pause"
	"github.com/podvm/podvm/agent/reaper"
	agentsecret "github.com/podvm/podvm/agent/secret"
	"github.com/podvm/podvm/agent/server"
	"github.com/podvm/podvm/agent/transport"
)

// nativeSandboxParam is the kernel parameter (an environment variable of
// PID 1) that turns the native sandbox on (docs/agent.md).
const nativeSandboxParam = "podvm_native_sandbox"

type options struct {
	listen     string
	secretFile string
	cfg        container.Config
	logLevel   string
}

// parseFlags never exits: as PID 1 the kernel hands init any boot
// parameter it does not know, and exiting over one would panic the guest.
// A bad argument is reported and skipped, and parsing goes on after it.
// Unknown key=value parameters arrive as environment variables instead,
// which is how podvm_agent_log=debug (contract.LogLevelParam) on the
// kernel command line works.
func parseFlags(args []string) (options, []error) {
	o := options{cfg: container.GuestConfig, logLevel: os.Getenv(contract.LogLevelParam)}
	// podvm_native_sandbox=1 on the kernel command line (hypervisor.kernel_params)
	// has the agent create a CRI pod's sandbox container itself. Off by
	// default: it measured slower (docs/benchmarks.md, "the native pause").
	o.cfg.NativeSandbox = os.Getenv(nativeSandboxParam) == "1"
	if o.logLevel == "" {
		o.logLevel = "info"
	}
	fs := flag.NewFlagSet("podvm-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.listen, "listen", "", `"vsock", "serial", or "unix:PATH"; empty picks vsock if the guest has a device, else serial`)
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the VM's agent secret, for -listen unix:PATH off a guest; a guest reads fw_cfg or SMBIOS")
	fs.StringVar(&o.cfg.Runc, "runc", o.cfg.Runc, "runc binary")
	fs.StringVar(&o.cfg.StateDir, "state-dir", o.cfg.StateDir, "runc --root directory")
	fs.StringVar(&o.cfg.BundleDir, "bundle-dir", o.cfg.BundleDir, "directory of container bundles")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log level: debug, info, warn, error")
	var errs []error
	// flag consumes the offending argument before it fails, so Args()
	// is what comes after it.
	for err := fs.Parse(args); err != nil; err = fs.Parse(fs.Args()) {
		errs = append(errs, err)
	}
	return o, errs
}

func main() {
	if pause.Invoked() {
		pause.Main() // a pod's native sandbox process, not the agent
	}
	if container.WarmInvoked() {
		container.WarmMain() // the warm-up container's program, not the agent
	}
	started := guestinit.BootTime()
	ctx := context.Background()
	pid1 := guestinit.IsPID1()
	opts, flagErrs := parseFlags(os.Args[1:])
	opts.cfg.OwnsNetwork = pid1
	opts.cfg.SealRuntime = pid1
	setupLogging(opts.logLevel)
	for _, err := range flagErrs {
		log.G(ctx).WithError(err).Warn("ignoring bad argument")
	}
	if pid1 {
		guestinit.Setup(ctx)
	}
	log.G(ctx).Infof("podvm-agent %s starting (pid %d)", server.Version, os.Getpid())
	if err := run(ctx, opts, started, pid1); err != nil {
		log.G(ctx).WithError(err).Error("podvm-agent stopped")
		os.Exit(1)
	}
}

// run serves AgentService. As PID 1 it never returns: when serving fails it
// logs, waits and listens again, because PID 1 exiting panics the kernel
// and the containers' state lives in this process. Off the guest it returns
// on the first failure, or after SIGINT or SIGTERM once it has removed its
// containers.
func run(ctx context.Context, opts options, started int64, pid1 bool) error {
	if err := reaper.Start(); err != nil {
		return err
	}
	containers := container.NewManager(opts.cfg, reaper.Subscribe())
	cfg := server.Config{Containers: containers, Guest: pid1, StartedNs: started}
	var key *agentsecret.Key // set below, before anything is served
	if pid1 {
		cfg.Handover = func(ctx context.Context, entropy []byte) error { return handover(key, entropy) }
		// Only the guest's own devices are ours to configure.
		nw, err := network.Open()
		if err != nil {
			log.G(ctx).WithError(err).Error("ConfigureNetwork will be refused")
		}
		cfg.Network = nw
	}
	svc := server.New(cfg)
	transport.Dispatched = server.CallCounts
	srv, err := server.NewServer(svc)
	if err != nil {
		return err
	}
	if !pid1 {
		go stopOnSignal(ctx, srv)
	}
	secret, err := loadSecret(ctx, opts, pid1)
	if err != nil {
		return err
	}
	if key, err = agentsecret.NewKey(secret); err != nil {
		return err
	}
	for {
		err := serve(ctx, srv, svc, opts.listen, key, started)
		if errors.Is(err, ttrpc.ErrServerClosed) {
			// Stopped by a signal: leave no containers behind.
			return containers.Shutdown(ctx)
		}
		if !pid1 {
			return err
		}
		log.G(ctx).WithError(err).Error("serving stopped; listening again in 1s")
		time.Sleep(time.Second)
	}
}

// loadSecret reads the VM's agent secret once, before anything is served.
// Off the guest it comes from -secret-file. In the guest a missing secret
// is retried, not fatal (PID 1 must not exit), and nothing is served
// without it; once read, the fw_cfg copy is removed from sysfs.
func loadSecret(ctx context.Context, opts options, pid1 bool) ([]byte, error) {
	if opts.secretFile != "" || !pid1 {
		return agentsecret.FromFile(opts.secretFile)
	}
	for logged := false; ; {
		s, from, err := agentsecret.Read()
		if err == nil {
			log.G(ctx).Infof("agent secret read from %s", from)
			if os.Getenv(contract.TemplateParam) == "1" {
				log.G(ctx).Info("booted as a VM template: fw_cfg stays bound until Handover")
				return s, nil
			}
			if err := agentsecret.Forget(); err != nil {
				log.G(ctx).WithError(err).Warn("agent secret stays readable in sysfs")
			}
			return s, nil
		}
		if !logged {
			log.G(ctx).WithError(err).Error("serving nobody until the agent secret is readable; retrying")
			logged = true
		}
		time.Sleep(time.Second)
	}
}

// handover makes a clone of a template a VM of its own (api Handover):
// the kernel's random generator leaves the template's state first, so
// nothing after it, the next auth challenge included, repeats another
// clone's bytes; then the clone's own secret replaces the template's.
func handover(key *agentsecret.Key, entropy []byte) error {
	if err := guestinit.Reseed(entropy); err != nil {
		return err
	}
	return key.Reread()
}

// serve opens the agent's channel and serves on it until the listener fails.
func serve(ctx context.Context, srv *ttrpc.Server, svc *server.Service, addr string, key *agentsecret.Key, started int64) error {
	l, kind, err := transport.ListenKey(ctx, addr, key)
	if err != nil {
		return err
	}
	ready := guestinit.BootTime()
	svc.SetReady(kind, ready)
	log.G(ctx).Infof("serving AgentService on %s %s; ready %.3fs after boot, %.3fs after start",
		kind, l.Addr(), float64(ready)/1e9, float64(ready-started)/1e9)
	return srv.Serve(ctx, l)
}

// stopOnSignal shuts the server down on SIGINT or SIGTERM.
func stopOnSignal(ctx context.Context, srv interface{ Shutdown(context.Context) error }) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	sig := <-sigs
	log.G(ctx).Infof("%v: shutting down", sig)
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
}

// setupLogging sends the log to stderr, which guestinit makes the VM's
// console, prefixed so agent lines stand out among the kernel's.
func setupLogging(level string) {
	l := log.L.Logger
	l.SetOutput(os.Stderr)
	l.SetFormatter(consoleFormatter{&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}})
	if err := log.SetLevel(level); err != nil {
		_ = log.SetLevel("info")
	}
}

// consoleFormatter prefixes each line with the agent's name and the
// seconds since the guest booted, like the kernel's own console lines.
type consoleFormatter struct{ inner logrus.Formatter }

func (f consoleFormatter) Format(e *logrus.Entry) ([]byte, error) {
	line, err := f.inner.Format(e)
	if err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("podvm-agent [%12.6f] ", float64(guestinit.BootTime())/1e9)
	return append([]byte(prefix), line...), nil
}
