// kata-interop: checks a kata agent (the C agent, or tests/interop/go/mock-agent) over one ttrpc
// connection on a unix socket with the reference Go ttrpc client and the generated kata stubs.
//
// Prints "PASS <name>" or "FAIL <name>: <why>" per check, then "N passed, M failed";
// exits 1 if any check failed (2 if the socket cannot be reached).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	pb "example.com/katainterop/grpc"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	passed, failed int
	callTimeout    = 5 * time.Second
)

func pass(name, detail string) {
	passed++
	if detail != "" {
		fmt.Printf("PASS %s (%s)\n", name, detail)
	} else {
		fmt.Printf("PASS %s\n", name)
	}
}

func fail(name, format string, a ...interface{}) {
	failed++
	fmt.Printf("FAIL %s: %s\n", name, fmt.Sprintf(format, a...))
}

// describe renders an error as "code=<Code> msg=<message>" (or the raw error for non-status errors).
func describe(err error) string {
	if err == nil {
		return "no error"
	}
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("code=%v msg=%q", st.Code(), st.Message())
	}
	return fmt.Sprintf("error %q", err.Error())
}

func ctxT() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

type checker struct {
	// agentMissing is set when GetGuestDetails got Unimplemented/InvalidArgument, i.e. the server
	// seems not to serve grpc.AgentService at all: then an Unimplemented answer to an unknown or
	// unimplemented method says nothing about method dispatch.
	agentMissing bool
	c            *ttrpc.Client
	health       pb.HealthService
	agent        pb.AgentServiceService
}

// a. grpc.Health Check and Version.
func (k *checker) checkHealth() {
	ctx, cancel := ctxT()
	defer cancel()
	r, err := k.health.Check(ctx, &pb.CheckRequest{})
	switch {
	case err != nil:
		fail("health.check", "%s", describe(err))
	case r.Status != pb.HealthCheckResponse_SERVING:
		fail("health.check", "status=%v, want SERVING", r.Status)
	default:
		pass("health.check", "status=SERVING")
	}

	v, err := k.health.Version(ctx, &pb.CheckRequest{})
	switch {
	case err != nil:
		fail("health.version", "%s", describe(err))
	case v.AgentVersion == "":
		fail("health.version", "empty agent_version (grpc_version=%q)", v.GrpcVersion)
	case v.GrpcVersion != "0.0.1":
		fail("health.version", "grpc_version=%q, want \"0.0.1\" (agent_version=%q)", v.GrpcVersion, v.AgentVersion)
	default:
		pass("health.version", fmt.Sprintf("agent_version=%q grpc_version=%q", v.AgentVersion, v.GrpcVersion))
	}
}

// b. AgentService.GetGuestDetails.
func (k *checker) checkGuestDetails() {
	ctx, cancel := ctxT()
	defer cancel()
	r, err := k.agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	switch {
	case err != nil:
		c := status.Code(err)
		k.agentMissing = c == codes.Unimplemented || c == codes.InvalidArgument
		fail("agent.get_guest_details", "%s", describe(err))
	case r.AgentDetails == nil:
		fail("agent.get_guest_details", "no agent_details in %v", r)
	case r.AgentDetails.Version == "":
		fail("agent.get_guest_details", "empty agent_details.version in %v", r)
	default:
		pass("agent.get_guest_details", fmt.Sprintf(
			"version=%q supports_seccomp=%v init_daemon=%v mem_block_size_bytes=%d support_mem_hotplug_probe=%v",
			r.AgentDetails.Version, r.AgentDetails.SupportsSeccomp, r.AgentDetails.InitDaemon,
			r.MemBlockSizeBytes, r.SupportMemHotplugProbe))
	}
}

// c. A call the agent does not implement by design.
func (k *checker) checkUnimplemented() {
	ctx, cancel := ctxT()
	defer cancel()
	_, err := k.agent.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: "/nonexistent/interop", Size_: 1 << 20})
	code := status.Code(err)
	switch {
	case k.agentMissing:
		fail("agent.resize_volume_unimplemented", "%s, but grpc.AgentService seems not served at all (see GetGuestDetails)", describe(err))
	case err == nil:
		fail("agent.resize_volume_unimplemented", "call succeeded, want Unimplemented or NotFound")
	case code == codes.Unimplemented || code == codes.NotFound:
		pass("agent.resize_volume_unimplemented", describe(err))
	default:
		fail("agent.resize_volume_unimplemented", "%s, want Unimplemented or NotFound", describe(err))
	}
}

// d. Unknown method and unknown service through raw c.Call.
func (k *checker) checkUnknown() {
	ctx, cancel := ctxT()
	defer cancel()
	var resp pb.HealthCheckResponse
	err := k.c.Call(ctx, "grpc.AgentService", "NoSuchMethod", &pb.CheckRequest{}, &resp)
	if k.agentMissing {
		fail("unknown.method", "%s, but grpc.AgentService seems not served at all (see GetGuestDetails)", describe(err))
	} else if code := status.Code(err); err != nil && code == codes.Unimplemented {
		pass("unknown.method", describe(err))
	} else {
		fail("unknown.method", "%s, want Unimplemented", describe(err))
	}

	err = k.c.Call(ctx, "grpc.NoSuchService", "Check", &pb.CheckRequest{}, &resp)
	if code := status.Code(err); err != nil && code == codes.InvalidArgument {
		pass("unknown.service", describe(err))
	} else {
		fail("unknown.service", "%s, want InvalidArgument", describe(err))
	}
}

// e. Out-of-order replies on one connection: a blocked GetOOMEvent must not hold up other calls.
func (k *checker) checkConcurrency() {
	const name = "concurrency.out_of_order"
	const oomTimeout = 1500 * time.Millisecond
	const nChecks = 20

	type result struct {
		what string
		err  error
		at   time.Time
	}

	start := time.Now()
	oomDone := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), oomTimeout)
		defer cancel()
		ev, err := k.agent.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
		if err == nil {
			err = fmt.Errorf("returned an OOM event (%v), want deadline exceeded", ev)
		}
		oomDone <- result{"GetOOMEvent", err, time.Now()}
	}()
	// Give the GetOOMEvent request a head start so that it is on the wire first.
	time.Sleep(100 * time.Millisecond)

	results := make(chan result, nChecks+1)
	var wg sync.WaitGroup
	for i := 0; i < nChecks; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := ctxT()
			defer cancel()
			r, err := k.health.Check(ctx, &pb.CheckRequest{})
			if err == nil && r.Status != pb.HealthCheckResponse_SERVING {
				err = fmt.Errorf("status=%v", r.Status)
			}
			results <- result{fmt.Sprintf("Health.Check #%d", i), err, time.Now()}
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := ctxT()
		defer cancel()
		r, err := k.agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
		if err == nil && (r.AgentDetails == nil || r.AgentDetails.Version == "") {
			err = fmt.Errorf("no agent_details.version in %v", r)
		}
		results <- result{"GetGuestDetails", err, time.Now()}
	}()
	wg.Wait()
	close(results)

	var oom result
	select {
	case oom = <-oomDone:
	case <-time.After(oomTimeout + callTimeout):
		fail(name, "GetOOMEvent did not return %v after its %v deadline", callTimeout, oomTimeout)
		return
	}
	oomElapsed := oom.at.Sub(start)

	var problems, callErrs []string
	var lastOther time.Duration
	late, total := 0, 0
	var firstLate time.Duration
	for r := range results {
		total++
		d := r.at.Sub(start)
		if d > lastOther {
			lastOther = d
		}
		if r.err != nil {
			callErrs = append(callErrs, fmt.Sprintf("%s failed: %s", r.what, describe(r.err)))
		} else if !r.at.Before(oom.at) || d > oomTimeout-300*time.Millisecond {
			// late: not answered while GetOOMEvent was still pending (with a margin: the goroutines that
			// record the times are scheduled in any order)
			if late == 0 || d < firstLate {
				firstLate = d
			}
			late++
		}
	}
	deadlineErr := errors.Is(oom.err, context.DeadlineExceeded) || status.Code(oom.err) == codes.DeadlineExceeded
	switch {
	case !deadlineErr:
		problems = append(problems, fmt.Sprintf("GetOOMEvent ended after %v with %s, want deadline exceeded",
			oomElapsed.Round(time.Millisecond), describe(oom.err)))
	case oomElapsed < 1400*time.Millisecond:
		problems = append(problems, fmt.Sprintf("GetOOMEvent ended too early, after %v (deadline %v): %s",
			oomElapsed.Round(time.Millisecond), oomTimeout, describe(oom.err)))
	case oomElapsed > oomTimeout+time.Second:
		problems = append(problems, fmt.Sprintf("GetOOMEvent ended too late, after %v (deadline %v): %s",
			oomElapsed.Round(time.Millisecond), oomTimeout, describe(oom.err)))
	}

	if len(callErrs) > 3 {
		callErrs = append(callErrs[:3], fmt.Sprintf("... and %d more failed calls", len(callErrs)-3))
	}
	problems = append(problems, callErrs...)
	if late > 0 && oomElapsed >= 1400*time.Millisecond { // else already reported above
		problems = append(problems, fmt.Sprintf(
			"%d of %d concurrent calls completed only after GetOOMEvent returned (first at %v, GetOOMEvent at %v): replies are not independent of the pending call",
			late, total, firstLate.Round(time.Millisecond), oomElapsed.Round(time.Millisecond)))
	}

	ctx, cancel := ctxT()
	defer cancel()
	if r, err := k.health.Check(ctx, &pb.CheckRequest{}); err != nil {
		problems = append(problems, "Health.Check after GetOOMEvent failed: "+describe(err))
	} else if r.Status != pb.HealthCheckResponse_SERVING {
		problems = append(problems, fmt.Sprintf("Health.Check after GetOOMEvent: status=%v", r.Status))
	}

	if len(problems) > 0 {
		fail(name, "%s", strings.Join(problems, "; "))
		return
	}
	pass(name, fmt.Sprintf("%d Health.Check + GetGuestDetails done by %v; GetOOMEvent ended after %v with %s",
		nChecks, lastOther.Round(time.Millisecond), oomElapsed.Round(time.Millisecond), describe(oom.err)))
}

// f. Many sequential calls on the same connection.
func (k *checker) checkSequential() {
	const name = "sequential.health_check_x200"
	start := time.Now()
	for i := 0; i < 200; i++ {
		ctx, cancel := ctxT()
		r, err := k.health.Check(ctx, &pb.CheckRequest{})
		cancel()
		if err != nil {
			fail(name, "call %d: %s", i, describe(err))
			return
		}
		if r.Status != pb.HealthCheckResponse_SERVING {
			fail(name, "call %d: status=%v", i, r.Status)
			return
		}
	}
	pass(name, fmt.Sprintf("200 calls in %v", time.Since(start).Round(time.Millisecond)))
}

func main() {
	sock := flag.String("sock", "", "unix socket of the agent (path, or unix://path)")
	quiet := flag.Bool("quiet-ttrpc-log", true, "hide the ttrpc library's log lines (e.g. late replies to timed-out calls)")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "kata-interop: -sock is required")
		os.Exit(2)
	}
	if *quiet {
		logrus.SetOutput(io.Discard)
	}
	path := strings.TrimPrefix(*sock, "unix://")
	conn, err := net.DialTimeout("unix", path, callTimeout)
	if err != nil {
		fmt.Printf("FAIL connect: %v\n0 passed, 1 failed\n", err)
		os.Exit(2)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	k := &checker{c: c, health: pb.NewHealthClient(c), agent: pb.NewAgentServiceClient(c)}

	k.checkHealth()
	k.checkGuestDetails()
	k.checkUnimplemented()
	k.checkUnknown()
	k.checkConcurrency()
	k.checkSequential()

	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		c.Close()
		os.Exit(1)
	}
}
