// Command vmagent runs inside the IPVS test VM (test/e2e/ipvsvm): the test
// on the host drives the VM through it, over the port qemu forwards from the
// host's loopback. It is the VM's only service and only answers requests
// that carry its token (a file the test puts in the VM's per-run archive,
// so no other user of the host's loopback can run commands in the VM).
//
//	vmagent -listen :7000 -token-file /etc/vmagent/token
//	vmagent probe -addr 10.96.0.10:80 -tries 5 -timeout 3s
//
// The API, all JSON over HTTP with "Authorization: Bearer <token>":
//
//	GET  /ping   "ok" once the agent runs
//	POST /run    {"argv":[...],"stdin":"...","timeoutSec":N}
//	             -> {"stdout":"...","stderr":"...","code":N}
//	POST /start  {"name":"kube-proxy","argv":[...]} -> {"pid":N};
//	             output to /var/log/<name>.log, running until the VM stops
//
// probe is the traffic: it opens tries fresh TCP connections to addr (IPv4),
// one after another, sends an HTTP request on each and prints one JSON line
// per try with the outcome (connected, refused, timeout, unreachable, reset,
// error), the local port and address it used and the reply (the echo server's
// "name=... port=... remote=..."). Run it with ip netns exec to send from a
// pod's or client's namespace.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		probeMain(os.Args[2:])
		return
	}
	listen := flag.String("listen", ":7000", "address to serve the API on")
	tokenFile := flag.String("token-file", "/etc/vmagent/token", "file holding the token every request must carry")
	flag.Parse()
	token, err := os.ReadFile(*tokenFile)
	if err != nil || len(bytes.TrimSpace(token)) < 16 {
		log.Fatalf("vmagent: no usable token in %s (%v): refusing to serve", *tokenFile, err)
	}
	a := &agent{token: "Bearer " + string(bytes.TrimSpace(token))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("POST /run", a.run)
	mux.HandleFunc("POST /start", a.start)
	log.Printf("vmagent: serving on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, a.auth(mux)))
}

type agent struct{ token string }

func (a *agent) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(a.token)) != 1 {
			http.Error(w, "missing or wrong token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type runRequest struct {
	Argv       []string `json:"argv"`
	Stdin      string   `json:"stdin,omitempty"`
	TimeoutSec int      `json:"timeoutSec,omitempty"`
}

type runResult struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// maxOutput bounds what one command may return: the VM's dumps are far
// smaller, and a runaway command must not exhaust the VM's memory.
const maxOutput = 64 << 20

func (a *agent) run(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Argv) == 0 {
		http.Error(w, "want {\"argv\":[...]}", http.StatusBadRequest)
		return
	}
	timeout := time.Duration(req.TimeoutSec) * time.Second
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Stdin = strings.NewReader(req.Stdin)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := runResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
	case err != nil:
		res.Code = -1
		res.Stderr += err.Error()
	}
	writeJSON(w, res)
}

// limitedBuffer keeps the first maxOutput bytes and says so when it cut.
type limitedBuffer struct {
	bytes.Buffer
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); len(p) > room {
		b.cut = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func (b *limitedBuffer) String() string {
	if b.cut {
		return b.Buffer.String() + "\n[vmagent: output cut]\n"
	}
	return b.Buffer.String()
}

type startRequest struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
}

var logName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (a *agent) start(w http.ResponseWriter, r *http.Request) {
	var req startRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Argv) == 0 || !logName.MatchString(req.Name) {
		http.Error(w, `want {"name":"[a-z0-9-]+","argv":[...]}`, http.StatusBadRequest)
		return
	}
	f, err := os.Create("/var/log/" + req.Name + ".log")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	go func() { cmd.Wait(); f.Close() }()
	writeJSON(w, map[string]int{"pid": cmd.Process.Pid})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// attempt is one probe try, as the test records it.
type attempt struct {
	Outcome string `json:"outcome"`
	// LocalPort is the source port, known also when the connection
	// failed (the socket is bound before it connects), so the test can
	// find the try in the node's IPVS and conntrack tables.
	LocalPort int    `json:"localPort,omitempty"`
	Local     string `json:"local,omitempty"`
	Reply     string `json:"reply,omitempty"`
	Error     string `json:"error,omitempty"`
	Millis    int64  `json:"ms"`
}

func probeMain(args []string) {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	addr := fs.String("addr", "", "ip:port to connect to")
	tries := fs.Int("tries", 1, "connections to open, one after another")
	timeout := fs.Duration("timeout", 3*time.Second, "how long one try may take")
	fs.Parse(args)
	if *addr == "" || *tries < 1 {
		log.Fatal("probe: want -addr ip:port and -tries >= 1")
	}
	enc := json.NewEncoder(os.Stdout)
	for range *tries {
		enc.Encode(probe(*addr, *timeout))
	}
}

func probe(addr string, timeout time.Duration) (a attempt) {
	start := time.Now()
	defer func() { a.Millis = time.Since(start).Milliseconds() }()
	port := 0
	d := net.Dialer{Timeout: timeout, Control: func(_, _ string, c syscall.RawConn) error {
		// Bind to an ephemeral port now, before connect, to learn it
		// whatever the outcome.
		var err error
		cerr := c.Control(func(fd uintptr) {
			if err = syscall.Bind(int(fd), &syscall.SockaddrInet4{}); err != nil {
				return
			}
			var sa syscall.Sockaddr
			if sa, err = syscall.Getsockname(int(fd)); err == nil {
				port = sa.(*syscall.SockaddrInet4).Port
			}
		})
		return errors.Join(cerr, err)
	}}
	conn, err := d.Dial("tcp4", addr)
	if err != nil {
		return attempt{Outcome: classify(err), LocalPort: port, Error: err.Error()}
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	conn.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return attempt{Outcome: classify(err), LocalPort: port, Local: local, Error: err.Error()}
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, 1<<16)), nil)
	if err != nil {
		// The handshake succeeded, so a refusal now is a reset.
		outcome := classify(err)
		if outcome == "refused" {
			outcome = "reset"
		}
		return attempt{Outcome: outcome, LocalPort: port, Local: local, Error: "connected, then: " + err.Error()}
	}
	body, _ := io.ReadAll(resp.Body)
	return attempt{Outcome: "connected", LocalPort: port, Local: local, Reply: strings.TrimSpace(string(body))}
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}
