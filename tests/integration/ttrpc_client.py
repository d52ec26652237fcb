"""A raw ttrpc client for the integration tests: frames by hand, so tests can also send hostile input."""
import socket
import struct
import time

HDR = struct.Struct(">IIBB")  # data length, stream id, message type, flags
T_REQUEST, T_RESPONSE, T_DATA = 1, 2, 3
MAX_DATA = 4 << 20

# google.rpc.Code
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS = 0, 1, 2, 3, 4, 5, 6
RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 8, 12, 13, 14


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(f"ttrpc status {code}: {message}")
        self.code, self.message = code, message


class Client:
    def __init__(self, pb, path=None, sock=None, timeout=10.0):
        self.pb = pb
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.next_id = 1
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send_frame(self, sid, mtype, flags, data):
        self.sock.sendall(HDR.pack(len(data), sid, mtype, flags) + data)

    def _recv_exact(self, n):
        if len(self.buf) < n:
            parts, have = [self.buf], len(self.buf)
            while have < n:
                chunk = self.sock.recv(max(65536, n - have))
                if not chunk:
                    raise EOFError("connection closed by the agent")
                parts.append(chunk)
                have += len(chunk)
            self.buf = b"".join(parts)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        length, sid, mtype, flags = HDR.unpack(self._recv_exact(HDR.size))
        assert length <= MAX_DATA, f"agent sent an oversized frame of {length} bytes"
        return sid, mtype, flags, self._recv_exact(length)

    def request_bytes(self, service, method, payload=b"", timeout_ns=0, metadata=None):
        r = self.pb.ttrpc.Request(service=service, method=method, payload=payload, timeout_nano=timeout_ns)
        for k, v in (metadata or {}).items():
            r.metadata.add(key=k, value=v)
        return r.SerializeToString()

    def send(self, service, method, req=None, timeout_ns=0, metadata=None):
        sid, self.next_id = self.next_id, self.next_id + 2
        payload = req.SerializeToString() if req is not None else b""
        self.send_frame(sid, T_REQUEST, 0, self.request_bytes(service, method, payload, timeout_ns, metadata))
        return sid

    def recv(self, timeout=None):
        """Next response: (stream id, code, message, payload bytes)."""
        sid, mtype, _flags, data = self.recv_frame(timeout)
        assert mtype == T_RESPONSE, f"unexpected frame type {mtype}"
        resp = self.pb.ttrpc.Response.FromString(data)
        code = resp.status.code if resp.HasField("status") else 0
        return sid, code, resp.status.message, resp.payload

    def call(self, service, method, req=None, resp_cls=None, timeout_ns=0):
        sid = self.send(service, method, req, timeout_ns)
        rsid, code, msg, payload = self.recv()
        assert rsid == sid, f"reply on stream {rsid}, expected {sid}"
        if code != 0:
            raise RpcError(code, msg)
        return resp_cls.FromString(payload) if resp_cls else payload

    def health(self):
        return self.call("grpc.Health", "Check", self.pb.health.CheckRequest(), self.pb.health.HealthCheckResponse)


def wait_for_socket(path, proc=None, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"agent exited with status {proc.returncode} before listening")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise TimeoutError(f"agent did not listen on {path} within {timeout}s")
