// health-server: reference Go ttrpc server (containerd/ttrpc, generated kata stubs) serving
// grpc.Health Check/Version on a unix socket, as the baseline for the bench/rpc benchmarks.
//
// Prints "ready" on stdout once listening; exits 0 on SIGTERM/SIGINT and removes the socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	pb "example.com/katainterop/grpc"
	"github.com/containerd/ttrpc"
)

type health struct{}

func (health) Check(ctx context.Context, r *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

func (health) Version(ctx context.Context, r *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{GrpcVersion: "0.0.1", AgentVersion: "3.2.0-alpha0"}, nil
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "health-server: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	sock := flag.String("sock", "", "unix socket path to listen on (required)")
	flag.Parse()
	if *sock == "" {
		die("-sock is required")
	}
	os.Remove(*sock)
	l, err := net.Listen("unix", *sock)
	if err != nil {
		die("listen: %v", err)
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		die("new server: %v", err)
	}
	pb.RegisterHealthService(s, health{})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	fmt.Println("ready")

	select {
	case sig := <-sigs:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.Shutdown(ctx) // stops listening, closes idle connections
		cancel()
		if err != nil {
			s.Close()
		}
		os.Remove(*sock)
		fmt.Fprintf(os.Stderr, "health-server: %v, exiting\n", sig)
	case err := <-served:
		os.Remove(*sock)
		die("serve: %v", err)
	}
}
