// Command hostileagent is a hostile podvm guest agent, built by the
// hostile-guest integration tests (runtime/integration, TestHostile*) and
// packed as /init into a guest initramfs. It does what the real agent does
// to be reachable (the secret handshake on the same transport) and serves
// the real AgentService, so that pods and containers start, but answers
// some calls as an attacker would. The attack is chosen on the kernel
// command line (AttackParam), which reaches PID 1 as an environment
// variable:
//
//   - oom: GetOOMEvent answers at once, forever, with random ids, huge
//     ids, the ids of this pod's own containers and those listed in
//     VictimsParam (another pod's containers);
//   - forge: StatsContainer reports no memory at all and absurd CPU
//     figures with a huge map of made-up stats, ListProcesses thousands of
//     pids (host pids among them), GuestDetails oversized strings, and
//     ReadStdout endless data for an exec;
//   - loris: StatsContainer, ListProcesses, UpdateContainer and
//     ExecProcess are accepted and never answered.
package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
	"github.com/podvm/podvm/agent/guestinit"
	"github.com/podvm/podvm/agent/network"
	"github.com/podvm/podvm/agent/pause"
	"github.com/podvm/podvm/agent/reaper"
	agentsecret "github.com/podvm/podvm/agent/secret"
	"github.com/podvm/podvm/agent/server"
	"github.com/podvm/podvm/agent/transport"
)

// AttackParam and VictimsParam are the kernel command line keys the tests
// set (through the handler's podvm config, kernel_params).
const (
	AttackParam  = "podvm_hostile"
	VictimsParam = "podvm_hostile_victims"
)

func main() {
	if pause.Invoked() {
		pause.Main() // a pod's native sandbox process (docs/agent.md)
	}
	started := guestinit.BootTime()
	ctx := context.Background()
	guestinit.Setup(ctx)
	attack := os.Getenv(AttackParam)
	var victims []string
	if v := os.Getenv(VictimsParam); v != "" {
		victims = strings.Split(v, ",")
	}
	log.G(ctx).Infof("hostile agent: attack %q, victims %v", attack, victims)
	if err := reaper.Start(); err != nil {
		log.G(ctx).WithError(err).Error("reaper")
	}
	cfg := container.GuestConfig
	cfg.OwnsNetwork = true
	nw, err := network.Open()
	if err != nil {
		log.G(ctx).WithError(err).Error("network")
	}
	svc := server.New(server.Config{Containers: container.NewManager(cfg, reaper.Subscribe()), Guest: true, StartedNs: started, Network: nw})
	srv, err := ttrpc.NewServer()
	if err != nil {
		log.G(ctx).WithError(err).Error("ttrpc server")
		select {}
	}
	api.RegisterAgentServiceService(srv, newHostile(attack, victims, svc))
	secret := readSecret(ctx)
	for {
		l, kind, err := transport.Listen(ctx, "", secret)
		if err == nil {
			svc.SetReady(kind, guestinit.BootTime())
			err = srv.Serve(ctx, l)
		}
		log.G(ctx).WithError(err).Error("serving stopped; listening again in 1s")
		time.Sleep(time.Second)
	}
}

// readSecret waits until the VM's agent secret is readable: PID 1 never exits.
func readSecret(ctx context.Context) []byte {
	for {
		s, _, err := agentsecret.Read()
		if err == nil {
			return s
		}
		log.G(ctx).WithError(err).Error("agent secret")
		time.Sleep(time.Second)
	}
}
