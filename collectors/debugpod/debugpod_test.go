package debugpod

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func fixedSuffix(t *testing.T) {
	t.Helper()
	old := randomSuffix
	randomSuffix = func() string { return "abcde" }
	t.Cleanup(func() { randomSuffix = old })
}

// update rewrites testdata/debug-pod.json.
var update = flag.Bool("update", false, "rewrite testdata/debug-pod.json")

// wantPod is the debug pod for node-1 with every default.
func wantPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "trace-svc-" + NodeHash("node-1") + "-abcde",
			Namespace: "default",
			Labels: map[string]string{
				"app.kubernetes.io/name": "kubectl-trace-svc",
				"trace-svc.io/debug-pod": "true",
			},
			Annotations: map[string]string{"trace-svc.io/node": "node-1"},
		},
		Spec: corev1.PodSpec{
			NodeName:                      "node-1",
			HostNetwork:                   true,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         ptr.To(int64(120)),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			Containers: []corev1.Container{{
				Name:                     "dump",
				Image:                    "registry.k8s.io/kube-proxy:v1.37.2",
				ImagePullPolicy:          corev1.PullIfNotPresent,
				Command:                  []string{"sleep", "120"},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("10m"),
						corev1.ResourceMemory: resource.MustParse("32Mi"),
					},
					Limits: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("1"),
						corev1.ResourceMemory: resource.MustParse("512Mi"),
					},
				},
				SecurityContext: &corev1.SecurityContext{
					Capabilities: &corev1.Capabilities{
						Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
						Drop: []corev1.Capability{"ALL"},
					},
					Privileged:               ptr.To(false),
					RunAsUser:                ptr.To(int64(0)),
					RunAsNonRoot:             ptr.To(false),
					AllowPrivilegeEscalation: ptr.To(false),
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
}

func TestPodSpec(t *testing.T) {
	fixedSuffix(t)
	tests := []struct {
		name string
		opts func(*Options)
		want func(*corev1.Pod)
	}{
		{name: "defaults", opts: func(*Options) {}, want: func(*corev1.Pod) {}},
		{
			name: "every option",
			opts: func(o *Options) {
				o.Namespace = "kube-system"
				o.Image = "example.com/tools:1"
				o.ImagePullSecrets = []string{"regcred", " ", "other"}
				o.Deadline = 45 * time.Second
				o.PriorityClassName = "system-node-critical"
				o.CreatedBy = &Creator{User: "alice", Host: "laptop-7", Time: "2025-06-01T10:00:00Z"}
			},
			want: func(p *corev1.Pod) {
				p.Annotations[CreatedByAnnotation] = `{"user":"alice","host":"laptop-7","time":"2025-06-01T10:00:00Z"}`
				p.Namespace = "kube-system"
				p.Spec.Containers[0].Image = "example.com/tools:1"
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}, {Name: "other"}}
				p.Spec.ActiveDeadlineSeconds = ptr.To(int64(45))
				p.Spec.Containers[0].Command = []string{"sleep", "45"}
				p.Spec.PriorityClassName = "system-node-critical"
			},
		},
		{
			name: "sub-second deadline rounds up to one second",
			opts: func(o *Options) { o.Deadline = 300 * time.Millisecond },
			want: func(p *corev1.Pod) {
				p.Spec.ActiveDeadlineSeconds = ptr.To(int64(1))
				p.Spec.Containers[0].Command = []string{"sleep", "1"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := NewOptions()
			tt.opts(&opts)
			want := wantPod()
			tt.want(want)
			got := PodSpec(opts, "node-1")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PodSpec (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPodSpecLeastPrivilege checks the safety properties directly, so a
// change to the expected pod above cannot quietly loosen them.
func TestPodSpecLeastPrivilege(t *testing.T) {
	p := PodSpec(NewOptions(), "a-node-with-a-very-long-name.eu-west-1.compute.internal")
	if !regexp.MustCompile(`^trace-svc-[0-9a-f]{10}-[a-z0-9]{5}$`).MatchString(p.Name) {
		t.Errorf("name %q is not trace-svc-<node-hash>-<random>", p.Name)
	}
	if len(p.Name) > 63 {
		t.Errorf("name %q is longer than 63 characters", p.Name)
	}
	s := p.Spec
	if !s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("namespaces: hostNetwork=%v hostPID=%v hostIPC=%v, want only host network", s.HostNetwork, s.HostPID, s.HostIPC)
	}
	if len(s.Volumes) != 0 {
		t.Errorf("volumes %v, want none by default", s.Volumes)
	}
	if s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds <= 0 {
		t.Error("no activeDeadlineSeconds: the kubelet would not kill a forgotten pod")
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Error("the service account token is mounted")
	}
	if len(s.Tolerations) != 1 || s.Tolerations[0].Operator != corev1.TolerationOpExists || s.Tolerations[0].Key != "" {
		t.Errorf("tolerations %v, want one that tolerates every taint", s.Tolerations)
	}
	for _, c := range s.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.Privileged == nil || *sc.Privileged {
			t.Errorf("container %s may be privileged", c.Name)
		}
		if sc != nil && sc.Capabilities != nil {
			for _, capability := range sc.Capabilities.Add {
				if capability != "NET_ADMIN" && capability != "NET_RAW" {
					t.Errorf("container %s adds capability %s", c.Name, capability)
				}
			}
		}
		if len(c.VolumeMounts) != 0 {
			t.Errorf("container %s mounts %v", c.Name, c.VolumeMounts)
		}
		if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s runs without the runtime's default seccomp profile", c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() {
			t.Errorf("container %s has no cpu and memory limits: a quota on limits would reject it", c.Name)
		}
		if c.Resources.Limits.Memory().Cmp(resource.MustParse("512Mi")) < 0 {
			t.Errorf("container %s is limited to %s of memory: iptables-save of a big node needs 300 MB", c.Name, c.Resources.Limits.Memory())
		}
	}
}

func TestDefaultImage(t *testing.T) {
	kp := func(phase corev1.PodPhase, image string) corev1.Pod {
		return corev1.Pod{
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-proxy", Image: image}}},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	tests := []struct {
		name    string
		pods    []corev1.Pod
		version string
		want    string
	}{
		{"running kube-proxy wins", []corev1.Pod{kp(corev1.PodPending, "a/kube-proxy:v1"), kp(corev1.PodRunning, "b/kube-proxy:v2")}, "v1.37.2", "b/kube-proxy:v2"},
		{"any kube-proxy before the server version", []corev1.Pod{kp(corev1.PodPending, "a/kube-proxy:v1")}, "v1.37.2", "a/kube-proxy:v1"},
		{"server version", nil, "v1.36.1", "registry.k8s.io/kube-proxy:v1.36.1"},
		{"provider build", nil, "v1.31.2-gke.1000", "registry.k8s.io/kube-proxy:v1.31.2"},
		{"k3s build without v", nil, "1.30.4+k3s1", "registry.k8s.io/kube-proxy:v1.30.4"},
		{"nothing known", nil, "", FallbackImage},
		{"other containers ignored", []corev1.Pod{{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sidecar", Image: "busybox"}}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}}, "v1.35.0", "registry.k8s.io/kube-proxy:v1.35.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultImage(tt.pods, tt.version); got != tt.want {
				t.Errorf("DefaultImage = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPodSpecGolden keeps the debug pod, as the API server receives it, in
// testdata/debug-pod.json: reviewers see every change to what runs on the
// nodes, and the end-to-end suite checks the admission policy of
// docs/rbac.md against exactly this pod.
func TestPodSpecGolden(t *testing.T) {
	fixedSuffix(t)
	opts := NewOptions()
	opts.Namespace = "trace-svc"
	opts.CreatedBy = &Creator{User: "alice", Host: "laptop-7", Time: "2025-06-01T10:00:00Z"}
	got, err := json.MarshalIndent(PodSpec(opts, "node-1"), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "debug-pod.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./collectors/debugpod -run TestPodSpecGolden -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); run with -update if intended:\n%s", path, diff)
	}
}
