// mock-agent: a tiny stand-in for the kata agent, used to validate the kata-interop checks.
//
// It speaks ttrpc with a hand-written server loop (not ttrpc.Server) so that it can mimic the
// ttrpc-rust server of the real kata agent where the Go server differs: unknown service gives
// INVALID_ARGUMENT "<svc> service does not exist", unknown method UNIMPLEMENTED "<m> method",
// a handler deadline DEADLINE_EXCEEDED "timeout". Each request runs in its own goroutine and
// replies are written in completion order. Implemented: grpc.Health Check/Version and
// grpc.AgentService GetGuestDetails and GetOOMEvent (blocks until the request deadline or the
// connection closes); everything else is unknown. With -serial it handles one request at a time
// on each connection, like a naive agent would (kata-interop's concurrency check must then fail).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	pb "example.com/katainterop/grpc"
	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	headerLen  = 10
	maxDataLen = 4 << 20
	typeReq    = 1
	typeResp   = 2
)

// handler decodes the payload itself and returns the reply message or a status error.
type handler func(ctx context.Context, payload []byte) (proto.Message, error)

func unary[Req any, PReq interface {
	*Req
	proto.Message
}](f func(context.Context, PReq) (proto.Message, error)) handler {
	return func(ctx context.Context, payload []byte) (proto.Message, error) {
		req := PReq(new(Req))
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
		}
		return f(ctx, req)
	}
}

var services = map[string]map[string]handler{
	"grpc.Health": {
		"Check": unary(func(ctx context.Context, r *pb.CheckRequest) (proto.Message, error) {
			return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
		}),
		"Version": unary(func(ctx context.Context, r *pb.CheckRequest) (proto.Message, error) {
			return &pb.VersionCheckResponse{GrpcVersion: "0.0.1", AgentVersion: "3.2.0-alpha0-mock"}, nil
		}),
	},
	"grpc.AgentService": {
		"GetGuestDetails": unary(func(ctx context.Context, r *pb.GuestDetailsRequest) (proto.Message, error) {
			resp := &pb.GuestDetailsResponse{AgentDetails: &pb.AgentDetails{
				Version:         "3.2.0-alpha0-mock",
				DeviceHandlers:  []string{},
				StorageHandlers: []string{},
				SupportsSeccomp: false,
			}}
			if r.MemBlockSize {
				resp.MemBlockSizeBytes = 128 << 20
			}
			if r.MemHotplugProbe {
				resp.SupportMemHotplugProbe = false
			}
			return resp, nil
		}),
		"GetOOMEvent": unary(func(ctx context.Context, r *pb.GetOOMEventRequest) (proto.Message, error) {
			<-ctx.Done() // no OOM ever happens in the mock
			if ctx.Err() == context.DeadlineExceeded {
				return nil, status.Error(codes.DeadlineExceeded, "timeout")
			}
			return nil, status.Error(codes.Canceled, "connection closed")
		}),
	},
}

var serial = flag.Bool("serial", false, "handle requests one at a time per connection (negative test)")

type conn struct {
	c   net.Conn
	wmu sync.Mutex
}

func (c *conn) send(sid uint32, resp *ttrpc.Response) {
	data, err := proto.Marshal(resp)
	if err != nil {
		log.Printf("marshal response: %v", err)
		return
	}
	buf := make([]byte, headerLen+len(data))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(data)))
	binary.BigEndian.PutUint32(buf[4:8], sid)
	buf[8] = typeResp
	copy(buf[headerLen:], data)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.c.Write(buf); err != nil {
		log.Printf("write: %v", err)
	}
}

func (c *conn) reply(sid uint32, msg proto.Message, err error) {
	resp := &ttrpc.Response{}
	if err != nil {
		resp.Status = status.Convert(err).Proto()
	} else {
		p, merr := proto.Marshal(msg)
		if merr != nil {
			resp.Status = status.Newf(codes.Internal, "marshal: %v", merr).Proto()
		} else {
			resp.Payload = p
		}
	}
	c.send(sid, resp)
}

func (c *conn) serve() {
	defer c.c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // cancels pending handlers when the connection goes away
	var hdr [headerLen]byte
	for {
		if _, err := io.ReadFull(c.c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		sid := binary.BigEndian.Uint32(hdr[4:8])
		if n > maxDataLen {
			if _, err := io.CopyN(io.Discard, c.c, int64(n)); err != nil {
				return
			}
			c.reply(sid, nil, status.Errorf(codes.InvalidArgument,
				"message length %d exceed maximum message size of %d", n, maxDataLen))
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.c, data); err != nil {
			return
		}
		if hdr[8] != typeReq {
			log.Printf("ignoring frame type %d on stream %d", hdr[8], sid)
			continue
		}
		if sid%2 == 0 {
			c.reply(sid, nil, status.Error(codes.InvalidArgument, "stream id must be odd"))
			continue
		}
		var req ttrpc.Request
		if err := proto.Unmarshal(data, &req); err != nil {
			c.reply(sid, nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err))
			continue
		}
		if *serial {
			c.dispatch(ctx, sid, &req)
		} else {
			go c.dispatch(ctx, sid, &req)
		}
	}
}

func (c *conn) dispatch(ctx context.Context, sid uint32, req *ttrpc.Request) {
	svc, ok := services[req.Service]
	if !ok {
		c.reply(sid, nil, status.Errorf(codes.InvalidArgument, "%s service does not exist", req.Service))
		return
	}
	h, ok := svc[req.Method]
	if !ok {
		c.reply(sid, nil, status.Errorf(codes.Unimplemented, "%s method", req.Method))
		return
	}
	if req.TimeoutNano > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutNano))
		defer cancel()
	}
	msg, err := h(ctx, req.Payload)
	c.reply(sid, msg, err)
}

func main() {
	sock := flag.String("sock", "", "unix socket path to listen on (required)")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "mock-agent: -sock is required")
		os.Exit(2)
	}
	os.Remove(*sock)
	l, err := net.Listen("unix", *sock)
	if err != nil {
		log.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		l.Close()
	}()
	fmt.Println("ready")
	for {
		nc, err := l.Accept()
		if err != nil {
			os.Remove(*sock)
			return
		}
		go (&conn{c: nc}).serve()
	}
}
