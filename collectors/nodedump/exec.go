package nodedump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// Executor runs argv in a pod's container and streams its output: the seam
// that lets the collectors run without a kubelet (tests use a scripted
// fake).
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, argv []string, stdout, stderr io.Writer) error
}

// NewAPIExecutor execs through the API server the way kubectl exec does:
// WebSocket first, SPDY when the upgrade fails.
func NewAPIExecutor(client kubernetes.Interface, config *rest.Config) Executor {
	return apiExecutor{client: client, config: config}
}

type apiExecutor struct {
	client kubernetes.Interface
	config *rest.Config
}

func (e apiExecutor) Exec(ctx context.Context, namespace, pod, container string, argv []string, stdout, stderr io.Writer) error {
	req := e.client.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   argv,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(e.config, "POST", req.URL())
	if err != nil {
		return err
	}
	// WebSocket must use GET (RFC 6455 section 4.1).
	ws, err := remotecommand.NewWebSocketExecutor(e.config, "GET", req.URL().String())
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
}

// ErrOutputTooLarge: a node's dump script printed more than RunOptions.MaxOutput.
var ErrOutputTooLarge = errors.New("the node's output is larger than allowed")

// outputCap bounds what one node's commands may write to their stdout and
// stderr buffers together. The two streams are copied concurrently.
type outputCap struct {
	mu    sync.Mutex
	left  int64
	limit int64
	over  bool
	stop  context.CancelFunc
}

func newOutputCap(limit int64) *outputCap { return &outputCap{left: limit, limit: limit} }

// exec runs argv through ex with stdout and stderr written within the cap.
// When the cap is hit the exec is cancelled: the stream would otherwise
// wait for a remote command blocked on writing what nobody reads.
func (c *outputCap) exec(ctx context.Context, ex Executor, t Target, argv []string, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.stop = cancel
	c.mu.Unlock()
	return ex.Exec(ctx, t.Namespace, t.Pod, t.Container, argv, cappedWriter{c, stdout}, cappedWriter{c, stderr})
}

type cappedWriter struct {
	c *outputCap
	w io.Writer
}

func (cw cappedWriter) Write(p []byte) (int, error) {
	c := cw.c
	c.mu.Lock()
	if c.over || int64(len(p)) > c.left {
		c.over = true
		if c.stop != nil {
			c.stop()
		}
		c.mu.Unlock()
		return 0, ErrOutputTooLarge
	}
	c.left -= int64(len(p))
	c.mu.Unlock()
	return cw.w.Write(p)
}

// exceeded reports whether the cap was hit.
func (c *outputCap) exceeded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.over
}

// tooLarge is the error for a node whose output hit the cap.
func (c *outputCap) tooLarge(node string) error {
	return fmt.Errorf("%w: node %q printed more than %s of rules; pass --max-dump-size with a larger size (for example --max-dump-size %s) if the node really has that many", ErrOutputTooLarge, node, byteSize(c.limit), byteSize(2*c.limit))
}

// byteSize writes n the way --max-dump-size takes it: 256Mi, 1Gi, 1500.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return fmt.Sprintf("%d", n)
}
