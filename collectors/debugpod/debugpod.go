// Package debugpod collects a node's dataplane through a short-lived node
// debug pod: host network, NET_ADMIN and NET_RAW (kubectl debug's netadmin
// profile), pinned to the node, killed by the kubelet after a deadline and
// always deleted by the client. The pod only provides the container: what
// runs in it and what its output means is collectors/nodedump's protocol.
package debugpod

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/trace-svc/kubectl-trace-svc/collectors/cluster"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
)

const (
	// NameLabel and DebugPodLabel mark every debug pod; Cleanup selects on
	// DebugPodLabel.
	NameLabel     = "app.kubernetes.io/name"
	NameValue     = "kubectl-trace-svc"
	DebugPodLabel = "trace-svc.io/debug-pod"
	// NodeAnnotation names the node the pod dumps (node names can be longer
	// than a label value may be).
	NodeAnnotation = "trace-svc.io/node"
	// CreatedByAnnotation records who made the pod, as JSON (Creator), so
	// that cleanup can say whose trace a pod it keeps belongs to.
	CreatedByAnnotation = "trace-svc.io/created-by"
	// ContainerName is the debug pod's only container.
	ContainerName = "dump"

	// DefaultNamespace is where debug pods go unless --debug-namespace says
	// otherwise.
	DefaultNamespace = "default"
	// DefaultDeadline bounds a debug pod's life (activeDeadlineSeconds).
	DefaultDeadline = 120 * time.Second
	// DefaultStartTimeout bounds the wait for the pod to run.
	DefaultStartTimeout = 60 * time.Second

	// KubeProxyRepository is the fallback image's repository; its tag is the
	// server's version.
	KubeProxyRepository = "registry.k8s.io/kube-proxy"
	// FallbackImage is used when neither kube-proxy's pods nor the server's
	// version give an image.
	FallbackImage = KubeProxyRepository + ":v1.37.2"
)

// The debug pod's resources. The requests are what its sleep needs, so it
// schedules on a full node. The limits are what the dumps need on a big
// node, because every command exec'd into the pod runs in its cgroup:
// iptables-legacy-save of 360,000 rules (20,000 Services, 100,000
// endpoints; 39 MB of output) peaks at 257 MB, iptables-nft-save of the
// same rules at over 300 MB, so 512Mi leaves room; the commands are single
// threaded, so one CPU never slows them. Limits are there at all because a
// ResourceQuota on limits rejects a pod that sets none.
const (
	RequestCPU    = "10m"
	RequestMemory = "32Mi"
	LimitCPU      = "1"
	LimitMemory   = "512Mi"
)

// Options configure the debug pods. NewOptions sets every default.
type Options struct {
	// Namespace holds the debug pods (--debug-namespace). It must allow
	// host-network pods (Pod Security level privileged).
	Namespace string
	// Image runs the dumps (--image); it needs sh, sleep, iptables and nft.
	Image string
	// ImagePullSecrets are secret names in Namespace (--image-pull-secret).
	ImagePullSecrets []string
	// Deadline is the pod's activeDeadlineSeconds: the kubelet kills it
	// then even if this client is gone.
	Deadline time.Duration
	// StartTimeout bounds the wait for the pod to be running.
	StartTimeout time.Duration
	// PriorityClassName is set on the pod when not empty.
	PriorityClassName string
	// CreatedBy is recorded on the pod (CreatedByAnnotation) when set.
	CreatedBy *Creator

	// MaxOutput bounds what the dump script may print on one node,
	// standard output and error together (--max-dump-size); past it the
	// collection of that node fails.
	MaxOutput int64
	// SpoolDir, when set, keeps each node's output on disk there
	// (nodedump.RunOptions.SpoolDir) instead of in memory.
	SpoolDir string

	// Script shapes the dump script: whether it observes (rule counters
	// and connection tables) and how much of a connection table it reads.
	Script nodedump.ScriptOptions

	// Executor runs commands in the pod; nil uses the API server's exec
	// (WebSocket, SPDY fallback).
	Executor nodedump.Executor
	// PollInterval is how often the pod's status is read while waiting.
	PollInterval time.Duration

	skipDryRun bool
	// slowAfter is how long a pod may take to run before a progress line
	// says what it is waiting for, repeated every slowEvery (or sooner
	// when what it waits for changes), by the clock now (nil: time.Now).
	now                  func() time.Time
	slowAfter, slowEvery time.Duration
}

// Defaults of the progress lines about a slow debug pod: an image pull or
// a busy kubelet takes seconds; a healthy start is well under them.
const (
	defaultSlowAfter = 3 * time.Second
	defaultSlowEvery = 5 * time.Second
)

// NewOptions returns Options with every default set.
func NewOptions() Options {
	return Options{
		Namespace:    DefaultNamespace,
		Deadline:     DefaultDeadline,
		StartTimeout: DefaultStartTimeout,
		PollInterval: time.Second,
		MaxOutput:    nodedump.DefaultMaxOutput,
		Script:       nodedump.DefaultScriptOptions,
	}
}

func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Image == "" {
		o.Image = FallbackImage
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = nodedump.DefaultMaxOutput
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.slowAfter <= 0 {
		o.slowAfter = defaultSlowAfter
	}
	if o.slowEvery <= 0 {
		o.slowEvery = defaultSlowEvery
	}
	return o
}

// Creator says who made a debug pod.
type Creator struct {
	// User is the kubeconfig's user: the client certificate's common
	// name, else the name of the context's user entry.
	User string `json:"user,omitempty"`
	// Host is the machine the plugin ran on.
	Host string `json:"host,omitempty"`
	// Time is when the pod was made (RFC 3339, UTC).
	Time string `json:"time,omitempty"`
}

// String is the creator for people: "alice on laptop-7 at
// 2025-06-01T10:00:00Z".
func (c Creator) String() string {
	s := c.User
	if s == "" {
		s = "an unknown user"
	}
	if c.Host != "" {
		s += " on " + c.Host
	}
	if c.Time != "" {
		s += " at " + c.Time
	}
	return s
}

// randomSuffix is replaced in tests.
var randomSuffix = func() string { return utilrand.String(5) }

// NodeHash is the short, name-safe stand-in for a node name in pod names.
func NodeHash(node string) string {
	sum := sha256.Sum256([]byte(node))
	return hex.EncodeToString(sum[:])[:10]
}

// PodSpec is the debug pod for node. It is pure apart from the random name
// suffix.
func PodSpec(opts Options, node string) *corev1.Pod {
	opts = opts.withDefaults()
	deadline := int64(opts.Deadline.Round(time.Second) / time.Second)
	if deadline < 1 {
		deadline = 1
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("trace-svc-%s-%s", NodeHash(node), randomSuffix()),
			Namespace: opts.Namespace,
			Labels: map[string]string{
				NameLabel:     NameValue,
				DebugPodLabel: "true",
			},
			Annotations: map[string]string{NodeAnnotation: node},
		},
		Spec: corev1.PodSpec{
			NodeName:    node,
			HostNetwork: true,
			// kube-proxy's health port and rules live in the host network
			// namespace; the host's processes and IPC are not needed.
			HostPID:                       false,
			HostIPC:                       false,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         ptr.To(deadline),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			PriorityClassName:             opts.PriorityClassName,
			Containers: []corev1.Container{{
				Name:                     ContainerName,
				Image:                    opts.Image,
				ImagePullPolicy:          corev1.PullIfNotPresent,
				Command:                  []string{"sleep", strconv.FormatInt(deadline, 10)},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse(RequestCPU),
						corev1.ResourceMemory: resource.MustParse(RequestMemory),
					},
					Limits: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse(LimitCPU),
						corev1.ResourceMemory: resource.MustParse(LimitMemory),
					},
				},
				SecurityContext: &corev1.SecurityContext{
					// kubectl debug --profile=netadmin adds NET_ADMIN and
					// NET_RAW; everything else is dropped here.
					Capabilities: &corev1.Capabilities{
						Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
						Drop: []corev1.Capability{"ALL"},
					},
					Privileged: ptr.To(false),
					// iptables and nft check for uid 0 before they use
					// their capabilities.
					RunAsUser:                ptr.To(int64(0)),
					RunAsNonRoot:             ptr.To(false),
					AllowPrivilegeEscalation: ptr.To(false),
					// The runtime's default filter allows what the dumps
					// use (netlink, {get,set}sockopt, reads) and blocks
					// mount, unshare, keyctl, bpf, ptrace and the like.
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
	if opts.CreatedBy != nil {
		if b, err := json.Marshal(opts.CreatedBy); err == nil {
			pod.Annotations[CreatedByAnnotation] = string(b)
		}
	}
	for _, s := range opts.ImagePullSecrets {
		if s = strings.TrimSpace(s); s != "" {
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
	}
	return pod
}

// DefaultImage picks the debug pod's image: the one the cluster's own
// kube-proxy runs (it carries iptables with the backend-detecting wrapper and
// nft, and the nodes have it already), else registry.k8s.io/kube-proxy at the
// server's version.
func DefaultImage(kubeProxyPods []corev1.Pod, serverVersion string) string {
	var fallback string
	for _, p := range kubeProxyPods {
		for _, c := range p.Spec.Containers {
			if c.Image == "" || (c.Name != "kube-proxy" && !strings.Contains(c.Image, "kube-proxy")) {
				continue
			}
			if p.Status.Phase == corev1.PodRunning {
				return c.Image
			}
			if fallback == "" {
				fallback = c.Image
			}
		}
	}
	if fallback != "" {
		return fallback
	}
	v := strings.TrimSpace(serverVersion)
	// Provider builds ("v1.31.2-gke.100", "v1.31.2+k3s1") have no upstream
	// tag; the release they build on does.
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	if v == "" {
		return FallbackImage
	}
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	return KubeProxyRepository + ":" + v
}

// AccessChecks lists what running debug pods in namespace needs beyond a
// trace's reads: create them, exec into them, read their status, delete
// them. Exec over SPDY is a POST (create); over WebSocket it is a GET that
// since 1.35 also needs create, and a refused WebSocket upgrade falls back
// to SPDY, so create is what must be allowed.
func AccessChecks(namespace string) []cluster.AccessCheck {
	return []cluster.AccessCheck{
		{Verb: "create", Resource: "pods", Namespace: namespace},
		{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: namespace},
		{Verb: "get", Resource: "pods", Namespace: namespace},
		{Verb: "delete", Resource: "pods", Namespace: namespace},
	}
}
