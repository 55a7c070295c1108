// Command kubelet is a stand-in kubelet for the end-to-end suite. Started
// inside a node's network namespace, it keeps its Node Ready (with the
// kubelet port in daemonEndpoints), marks host-network pods bound to the
// node Running with the node's IP, and serves the apiserver's
// /exec/{namespace}/{pod}/{container} with the kubelet's own remotecommand
// server (k8s.io/cri-streaming), running the command right here, in the
// node's namespace, so iptables-save returns the node's real rules.
//
// It pulls nothing and runs no containers: a pod is only a name that exec
// accepts. While the file named by -hold exists, new pods stay Pending.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

var (
	nodeName  = flag.String("node", "", "Node name")
	nodeIP    = flag.String("ip", "", "node IP to serve on and to report")
	port      = flag.Int("port", 10250, "kubelet port")
	server    = flag.String("server", "", "apiserver URL")
	caFile    = flag.String("ca", "", "cluster CA (verifies the apiserver and the apiserver's client cert)")
	certFile  = flag.String("cert", "", "client cert for the apiserver")
	keyFile   = flag.String("key", "", "client key for the apiserver")
	tlsCert   = flag.String("tls-cert", "", "serving cert (SAN = node IP)")
	tlsKey    = flag.String("tls-key", "", "serving key")
	holdFile  = flag.String("hold", "", "while this file exists, new pods stay Pending")
	heartbeat = flag.Duration("heartbeat", 10*time.Second, "node status interval")
)

type kubelet struct {
	api  *http.Client
	mu   sync.Mutex
	pods map[string]string // namespace/name -> uid, pods marked Running
}

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatal("no CA certificate in ", *caFile)
	}
	client, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	k := &kubelet{
		api: &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}},
		}},
		pods: map[string]string{},
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.serveExec)
	mux.HandleFunc("/exec/{ns}/{pod}/{uid}/{container}", k.serveExec)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{
		Addr:    net.JoinHostPort(*nodeIP, strconv.Itoa(*port)),
		Handler: logRequests(mux),
		TLSConfig: &tls.Config{
			ClientCAs:  pool,
			ClientAuth: tls.RequireAndVerifyClientCert,
		},
	}
	go func() { log.Fatal(srv.ListenAndServeTLS(*tlsCert, *tlsKey)) }()
	go k.keepNodeReady()
	for {
		if err := k.syncPods(); err != nil {
			log.Printf("pods: %v", err)
		}
		time.Sleep(time.Second)
	}
}

func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		h.ServeHTTP(w, r)
	})
}

func (k *kubelet) do(method, path, ctype string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(method, *server+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := k.api.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode/100 != 2 {
		err = fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b, err
}

// keepNodeReady reports the node Ready, its InternalIP and kubelet port.
func (k *kubelet) keepNodeReady() {
	for {
		now := time.Now().UTC().Format(time.RFC3339)
		patch := fmt.Sprintf(`{"status":{
			"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}},
			"addresses":[{"type":"InternalIP","address":%q},{"type":"Hostname","address":%q}],
			"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"stand-in kubelet","lastHeartbeatTime":%q,"lastTransitionTime":%q}]}}`,
			*port, *nodeIP, *nodeName, now, now)
		if _, err := k.do("PATCH", "/api/v1/nodes/"+*nodeName+"/status", "application/strategic-merge-patch+json", []byte(patch)); err != nil {
			log.Printf("node status: %v", err)
		}
		time.Sleep(*heartbeat)
	}
}

type pod struct {
	Metadata struct {
		Name              string  `json:"name"`
		Namespace         string  `json:"namespace"`
		UID               string  `json:"uid"`
		ResourceVersion   string  `json:"resourceVersion"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork bool `json:"hostNetwork"`
		Containers  []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// syncPods lists the node's pods, then follows a watch until it ends.
func (k *kubelet) syncPods() error {
	sel := url.QueryEscape("spec.nodeName=" + *nodeName)
	b, err := k.do("GET", "/api/v1/pods?fieldSelector="+sel, "", nil)
	if err != nil {
		return err
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []pod `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		seen[p.Metadata.Namespace+"/"+p.Metadata.Name] = true
		k.handle("SYNC", p)
	}
	k.mu.Lock()
	for key := range k.pods {
		if !seen[key] {
			delete(k.pods, key)
		}
	}
	k.mu.Unlock()

	// Poll the hold file while watching: pods held Pending are released
	// by the next list, so end the watch after a while.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", *server+"/api/v1/pods?watch=1&allowWatchBookmarks=false&fieldSelector="+sel+"&resourceVersion="+list.Metadata.ResourceVersion, nil)
	if err != nil {
		return err
	}
	resp, err := k.api.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("watch: %s: %s", resp.Status, b)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev struct {
			Type   string `json:"type"`
			Object pod    `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			k.handle(ev.Type, &ev.Object)
		case "DELETED":
			k.forget(&ev.Object)
		case "ERROR":
			return nil // e.g. resource version too old: list again
		}
	}
}

func (k *kubelet) forget(p *pod) {
	key := p.Metadata.Namespace + "/" + p.Metadata.Name
	k.mu.Lock()
	_, had := k.pods[key]
	delete(k.pods, key)
	k.mu.Unlock()
	if had {
		log.Printf("pod %s deleted: forgotten", key)
	}
}

func (k *kubelet) handle(why string, p *pod) {
	key := p.Metadata.Namespace + "/" + p.Metadata.Name
	if !p.Spec.HostNetwork {
		return // the harness gives other pods their own namespace and status
	}
	if p.Metadata.DeletionTimestamp != nil {
		// No containers to stop: finish the deletion now.
		k.forget(p)
		body := fmt.Sprintf(`{"apiVersion":"v1","kind":"DeleteOptions","gracePeriodSeconds":0,"preconditions":{"uid":%q}}`, p.Metadata.UID)
		if _, err := k.do("DELETE", "/api/v1/namespaces/"+p.Metadata.Namespace+"/pods/"+p.Metadata.Name, "application/json", []byte(body)); err != nil {
			log.Printf("pod %s: finish deletion: %v", key, err)
		}
		return
	}
	k.mu.Lock()
	uid, known := k.pods[key]
	k.mu.Unlock()
	if known && uid == p.Metadata.UID && p.Status.Phase == "Running" {
		return
	}
	if *holdFile != "" {
		if _, err := os.Stat(*holdFile); err == nil {
			log.Printf("pod %s (%s): held Pending", key, why)
			return
		}
	}
	now := time.Now().UTC().Format(time.RFC3339)
	var cs []string
	for _, c := range p.Spec.Containers {
		cs = append(cs, fmt.Sprintf(`{"name":%q,"image":%q,"imageID":"","ready":true,"started":true,"restartCount":0,"state":{"running":{"startedAt":%q}}}`, c.Name, c.Image, now))
	}
	csJSON := "[" + joinComma(cs) + "]"
	patch := fmt.Sprintf(`{"status":{"phase":"Running","hostIP":%q,"hostIPs":[{"ip":%q}],"podIP":%q,"podIPs":[{"ip":%q}],"startTime":%q,
		"conditions":[{"type":"PodScheduled","status":"True","lastTransitionTime":%q},{"type":"Initialized","status":"True","lastTransitionTime":%q},{"type":"ContainersReady","status":"True","lastTransitionTime":%q},{"type":"Ready","status":"True","lastTransitionTime":%q}],
		"containerStatuses":%s}}`, *nodeIP, *nodeIP, *nodeIP, *nodeIP, now, now, now, now, now, csJSON)
	if _, err := k.do("PATCH", "/api/v1/namespaces/"+p.Metadata.Namespace+"/pods/"+p.Metadata.Name+"/status", "application/merge-patch+json", []byte(patch)); err != nil {
		log.Printf("pod %s: set Running: %v", key, err)
		return
	}
	k.mu.Lock()
	k.pods[key] = p.Metadata.UID
	k.mu.Unlock()
	log.Printf("pod %s (%s): Running", key, why)
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}

func (k *kubelet) serveExec(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	key := ns + "/" + name
	k.mu.Lock()
	uid, ok := k.pods[key]
	k.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("pod %s not found on node %s", key, *nodeName), http.StatusNotFound)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.Form["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	log.Printf("exec in %s/%s: %q", key, container, cmd[0])
	remotecommand.ServeExec(w, r, nodeExecutor{}, key, uid, container, cmd, opts,
		4*time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// nodeExecutor runs the command in this process's namespaces: the node's.
type nodeExecutor struct{}

func (nodeExecutor) ExecInContainer(ctx context.Context, name, uid, container string, argv []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if in != nil {
		cmd.Stdin = in
	}
	if out != nil {
		cmd.Stdout = out
	}
	if errw != nil {
		cmd.Stderr = errw
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		log.Printf("exec in %s: exit %d", name, ee.ExitCode())
		return &utilexec.ExitErrorWrapper{ExitError: ee}
	}
	if err != nil {
		log.Printf("exec in %s: %v", name, err)
	}
	return err
}
